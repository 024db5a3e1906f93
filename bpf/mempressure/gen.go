package mempressure

//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target bpfel probe c/mempressure.bpf.c
