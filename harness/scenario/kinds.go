package scenario

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/kinds"
)

var (
	// scenario-level kinds, besides those registered in workloads/kinds
	victimKinds    = []string{KindAgents}
	neighbourKinds = []string{KindAgents}
	commonKeys     = []string{"name", "kind", "set", "class"}
)

// kindParams is what a kind takes (TOML names): a registered kind's keys,
// or the agents entry's.
func kindParams(kind string) []string {
	if kind == KindAgents {
		return agentsKeys
	}
	if k := kinds.Lookup(kind); k != nil {
		return k.Keys
	}
	return nil
}

// reserved names cannot label a neighbour set: they mark solo trials.
var reserved = map[string]bool{"none": true, "solo": true}

func (v *validator) workloads(r *rawFile, s *Scenario) {
	names := map[string]string{} // name -> field path of first use
	s.Classes = map[string]string{}
	if len(r.Victims) == 0 {
		v.add("victims", "at least one [[victims]] entry is needed: nothing would be measured")
	}
	for i := range r.Victims {
		p := fmt.Sprintf("victims[%d]", i)
		w := &r.Victims[i]
		name, kind := v.identity(p, w, append(slices.Clone(victimKinds), kinds.Names(trial.RoleVictim)...), names)
		if kind == "" {
			continue
		}
		entry := entryAt(v.entries.Victims, i)
		v.strayRegistered(p, kind, entry, kindParams(kind))
		defClass := trial.ClassToolBurst // an agents entry's
		reg := kinds.Lookup(kind)
		if kind != KindAgents {
			defClass = cmp.Or(reg.VictimClass, trial.ClassDefault)
		}
		class := v.class(p, w, defClass)
		if w.Set.isSet() {
			v.add(p+".set", "only neighbours belong to sets; victims run in every trial")
		}
		if kind == KindAgents {
			for _, vic := range v.agentVictims(p, w, entry, s, name, names, class) {
				s.Classes[vic.Name] = class
				s.Victims = append(s.Victims, vic)
			}
			continue
		}
		vic := trial.Victim{Name: name, Kind: kind, Session: VictimSession, Step: name}
		if reg.Session != nil {
			vic.Step = "" // it makes its own steps under the session
		}
		v.registered(p, reg, trial.RoleVictim, entry, s, &vic, class)
		s.Classes[name] = class
		s.Victims = append(s.Victims, vic)
	}

	s.SetOf = map[string]string{}
	for i := range r.Neighbours {
		p := fmt.Sprintf("neighbours[%d]", i)
		w := &r.Neighbours[i]
		name, kind := v.identity(p, w, append(slices.Clone(neighbourKinds), kinds.Names(trial.RoleNeighbour)...), names)
		if kind == "" {
			continue
		}
		entry := entryAt(v.entries.Neighbours, i)
		v.strayRegistered(p, kind, entry, kindParams(kind))
		s.Classes[name] = v.class(p, w, trial.ClassBackground)
		set := name
		if v.ok(p+".set", &w.Set) {
			set = w.Set.V
		}
		switch {
		case reserved[set]:
			v.add(p+".set", "%q is reserved for solo trials; pick another name", set)
		case !nameRe.MatchString(set):
			v.add(p+".set", "%q: use 1-48 letters, digits, '_' or '-'", set)
		}
		if strings.HasPrefix(names[set], "victims") {
			v.add(p+".set", "%q is also a victim's name; keep set names distinct so results are unambiguous", set)
		}
		if !contains(s.NeighbourSets, set) {
			s.NeighbourSets = append(s.NeighbourSets, set)
		}
		s.SetOf[name] = set
		if kind == KindAgents {
			// the entry's name stands for its agents only
			class := s.Classes[name]
			delete(s.Classes, name)
			delete(s.SetOf, name)
			for _, nb := range v.agentNeighbours(p, w, entry, s, name, names) {
				s.Classes[nb.Name], s.SetOf[nb.Name] = class, set
				s.Neighbours = append(s.Neighbours, nb)
			}
			continue
		}
		nb := trial.Neighbour{Name: name, Kind: kind, Session: NeighbourSession, Step: name}
		v.registered(p, kinds.Lookup(kind), trial.RoleNeighbour, entry, s, &nb, s.Classes[name])
		s.Neighbours = append(s.Neighbours, nb)
	}
	if len(r.Neighbours) == 0 && !s.Solo {
		v.add("neighbours", "no [[neighbours]] and solo = false: there would be no trials")
	}
}

// identity checks name and kind and rejects parameters of other kinds.
// It returns kind "" when the kind is unusable.
func (v *validator) identity(p string, w *rawWorkload, known []string, names map[string]string) (string, string) {
	name := ""
	if v.required(p+".name", &w.Name) {
		name = w.Name.V
		switch {
		case !nameRe.MatchString(name):
			v.add(p+".name", "%q: use 1-48 letters, digits, '_' or '-'", name)
		case reserved[name]:
			v.add(p+".name", "%q is reserved for solo trials; pick another name", name)
		case names[name] != "":
			v.add(p+".name", "%q is already used by %s; workload names must be unique", name, names[name])
		}
		if names[name] == "" {
			names[name] = p
		}
	}
	if !v.required(p+".kind", &w.Kind) {
		return name, ""
	}
	kind := w.Kind.V
	if !contains(known, kind) {
		v.add(p+".kind", "unknown kind %q, want one of %s", kind, strings.Join(known, ", "))
		return name, ""
	}
	allowed := append(append([]string{}, commonKeys...), kindParams(kind)...)
	rv := reflect.ValueOf(w).Elem()
	rt := rv.Type()
	var stray []string
	for i := 0; i < rt.NumField(); i++ {
		tag := rt.Field(i).Tag.Get("toml")
		f, ok := rv.Field(i).Addr().Interface().(lenient)
		if ok && f.isSet() && !contains(allowed, tag) {
			stray = append(stray, tag)
		}
	}
	sort.Strings(stray)
	for _, t := range stray {
		v.add(p+"."+t, "does not apply to kind %s (it takes %s)", kind, strings.Join(kindParams(kind), ", "))
	}
	return name, kind
}

func (v *validator) class(p string, w *rawWorkload, def string) string {
	if !v.ok(p+".class", &w.Class) {
		return def
	}
	switch w.Class.V {
	case trial.ClassDefault, trial.ClassInteractive, trial.ClassToolBurst, trial.ClassBackground:
		return w.Class.V
	}
	v.add(p+".class", "%q, want default, interactive, tool_burst or background", w.Class.V)
	return def
}

func (v *validator) required(field string, f lenient) bool {
	if v.ok(field, f) {
		return true
	}
	if f.problem() == "" {
		v.add(field, "required")
	}
	return false
}

func (v *validator) nonNeg(field string, f *Int) int64 {
	if !v.ok(field, f) {
		return 0
	}
	if f.V < 0 {
		v.add(field, "must be >= 0")
		return 0
	}
	return f.V
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
