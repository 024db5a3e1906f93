package kernel

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/agentcgroup/agentcgroup/internal/fsutil"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// extractPVH unpacks the ELF kernel inside a bzImage and keeps it only if
// it has a PVH entry point. qemu loads such an ELF directly, which skips the
// in-guest decompression: under TCG that is a large share of boot time.
func extractPVH(bzImage, dst string) error {
	b, err := os.ReadFile(bzImage)
	if err != nil {
		return err
	}
	payload, want, err := bzPayload(b)
	if err != nil {
		return err
	}
	var r io.Reader
	switch {
	case bytes.HasPrefix(payload, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(bytes.NewReader(payload), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return err
		}
		defer d.Close()
		r = d
	case bytes.HasPrefix(payload, []byte("\xfd7zXZ\x00")):
		if r, err = xz.NewReader(bytes.NewReader(payload)); err != nil {
			return err
		}
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		if r, err = gzip.NewReader(bytes.NewReader(payload)); err != nil {
			return err
		}
	default:
		return errors.New("bzImage payload compression not recognised")
	}
	elfData, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("decompressing the bzImage payload: %w", err)
	}
	if uint32(len(elfData)) != want {
		return fmt.Errorf("decompressed %d bytes, the image says %d", len(elfData), want)
	}
	if ok, err := hasPVHNote(elfData); err != nil || !ok {
		if err == nil {
			err = errors.New("kernel has no PVH entry point")
		}
		return err
	}
	return fsutil.WriteFile(dst, elfData)
}

// bzPayload returns the compressed kernel inside a bzImage (boot protocol
// 2.08+: payload_offset/payload_length in the setup header) without the
// trailing little-endian uncompressed size, which it returns separately.
func bzPayload(b []byte) ([]byte, uint32, error) {
	if len(b) < 0x250 || string(b[0x202:0x206]) != "HdrS" {
		return nil, 0, errors.New("not a bzImage (no HdrS setup header)")
	}
	if binary.LittleEndian.Uint16(b[0x206:]) < 0x208 {
		return nil, 0, errors.New("bzImage boot protocol older than 2.08")
	}
	setupSects := int(b[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(b[0x248:]))
	n := int(binary.LittleEndian.Uint32(b[0x24c:]))
	if n < 4 || start+n > len(b) {
		return nil, 0, errors.New("bzImage payload out of bounds")
	}
	p := b[start : start+n]
	return p[:n-4], binary.LittleEndian.Uint32(p[n-4:]), nil
}

// hasPVHNote looks for XEN_ELFNOTE_PHYS32_ENTRY (18) in a "Xen" note.
func hasPVHNote(elfData []byte) (bool, error) {
	f, err := elf.NewFile(bytes.NewReader(elfData))
	if err != nil {
		return false, err
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		if err != nil {
			return false, err
		}
		for len(notes) >= 12 {
			nameSz := binary.LittleEndian.Uint32(notes[0:])
			descSz := binary.LittleEndian.Uint32(notes[4:])
			typ := binary.LittleEndian.Uint32(notes[8:])
			nameEnd := 12 + int((nameSz+3)&^3)
			next := nameEnd + int((descSz+3)&^3)
			if next > len(notes) {
				break
			}
			if typ == 18 && bytes.HasPrefix(notes[12:], []byte("Xen\x00")) {
				return true, nil
			}
			notes = notes[next:]
		}
	}
	return false, nil
}
