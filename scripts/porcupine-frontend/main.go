// Command porcupine-frontend checks Riptide's JSON Lines histories with Porcupine's
// CheckOperations, with the semantics of Riptide's `register` (= `kv`, per key) and `append`
// models, so that both checkers can be timed on the same files (scripts/bench-vs-porcupine.sh).
//
//	porcupine-frontend -model register|append [-timeout 300s] FILE...
//
// Prints one line per file, "FILE: LINEARIZABLE|NOT LINEARIZABLE|UNKNOWN (...)", and exits 0
// (all linearizable), 1 (some not), 2 (some unknown) or 3 (bad input), as `riptide check` does.
//
// Semantics (those of Riptide's models): events pair by process into operations; `ok` happened,
// `fail` did not (it is dropped) except a cas with "error":"precondition-failed", which completed
// and saw a value other than its `from`; `info` or no completion is an unknown outcome, open to
// the end of the history (Porcupine must linearize every operation, and taking effect after every
// other operation is the same as never taking effect). Values compare by their literal JSON text;
// in `register`, null is absence (write(null) deletes, a read of null reads absence).
//
// The parser is written for the flat event objects Riptide writes: one pass over the bytes, no
// reflection, values kept as slices of the input.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/anishathalye/porcupine"
)

type event struct {
	process int64
	nemesis bool
	kind    string
	f       string
	key     string
	value   []byte
	errText string
}

// Operation kinds.
const (
	opRead byte = iota
	opWrite
	opCas
	opDelete
	opAppend
)

type input struct {
	op   byte
	a, b string // write/append: a; cas: a = from, b = to
}

// Output kinds.
const (
	outUnknown byte = iota
	outValue
	outDone
	outCasFailed
)

type output struct {
	kind byte
	v    string
}

const absent = "null"

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// scanValue returns the end of the JSON value starting at b[i].
func scanValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return i, fmt.Errorf("value expected")
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			if b[j] == '\\' {
				j++
			} else if b[j] == '"' {
				return j + 1, nil
			}
		}
		return i, fmt.Errorf("unterminated string")
	case '[', '{':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := scanValue(b, j)
				if err != nil {
					return i, err
				}
				j = end - 1
			case '[', '{':
				depth++
			case ']', '}':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return i, fmt.Errorf("unterminated array or object")
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' {
			j++
		}
		if j == i {
			return i, fmt.Errorf("value expected")
		}
		return j, nil
	}
}

// str decodes a JSON string literal (fast path without escapes).
func str(raw []byte) (string, error) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", fmt.Errorf("string expected, got %s", raw)
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

func parseLine(b []byte) (event, error) {
	var ev event
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return ev, fmt.Errorf("object expected")
	}
	i++
	for {
		i = skipSpace(b, i)
		if i < len(b) && b[i] == '}' {
			return ev, nil
		}
		end, err := scanValue(b, i)
		if err != nil {
			return ev, err
		}
		name := b[i+1 : end-1]
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return ev, fmt.Errorf("':' expected")
		}
		i = skipSpace(b, i+1)
		end, err = scanValue(b, i)
		if err != nil {
			return ev, err
		}
		raw := b[i:end]
		switch string(name) {
		case "process":
			if raw[0] == '"' {
				ev.nemesis = true
			} else if ev.process, err = strconv.ParseInt(string(raw), 10, 64); err != nil {
				return ev, err
			}
		case "type":
			ev.kind, err = str(raw)
		case "f":
			ev.f, err = str(raw)
		case "key":
			if string(raw) != "null" {
				ev.key, err = str(raw)
			}
		case "value":
			ev.value = raw
		case "error":
			if string(raw) != "null" {
				ev.errText, err = str(raw)
			}
		}
		if err != nil {
			return ev, err
		}
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i++
		}
	}
}

// pair2 splits a JSON array of two values into their texts.
func pair2(raw []byte) (string, string, bool) {
	if len(raw) < 2 || raw[0] != '[' {
		return "", "", false
	}
	i := skipSpace(raw, 1)
	end, err := scanValue(raw, i)
	if err != nil {
		return "", "", false
	}
	from := string(raw[i:end])
	i = skipSpace(raw, end)
	if i >= len(raw) || raw[i] != ',' {
		return "", "", false
	}
	i = skipSpace(raw, i+1)
	end2, err := scanValue(raw, i)
	if err != nil {
		return "", "", false
	}
	return from, string(raw[i:end2]), true
}

type model struct {
	name    string
	prepare func(f string, in []byte) (input, error)
	porc    porcupine.Model
}

// stringContent: the content of a JSON string literal, "" for null (append model).
func stringContent(raw []byte) (string, error) {
	if string(raw) == "null" || len(raw) == 0 {
		return "", nil
	}
	if raw[0] != '"' {
		return "", fmt.Errorf("a string expected, got %s", raw)
	}
	return string(raw[1 : len(raw)-1]), nil
}

func fnv(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func hashState(state interface{}) uint64 { return fnv(state.(string)) }

func registerModel() model {
	prepare := func(f string, in []byte) (input, error) {
		switch f {
		case "read", "get":
			return input{op: opRead}, nil
		case "write", "put":
			return input{op: opWrite, a: string(in)}, nil
		case "delete":
			return input{op: opDelete}, nil
		case "append":
			if len(in) < 2 || in[0] != '"' {
				return input{}, fmt.Errorf("an append's value must be a string")
			}
			return input{op: opAppend, a: string(in[1 : len(in)-1])}, nil
		case "cas":
			from, to, ok := pair2(in)
			if !ok {
				return input{}, fmt.Errorf("cas value must be [from, to], got %s", in)
			}
			return input{op: opCas, a: from, b: to}, nil
		}
		return input{}, fmt.Errorf("unknown f %q", f)
	}
	step := func(st, in, out interface{}) (bool, interface{}) {
		s := st.(string)
		i := in.(input)
		o := out.(output)
		switch i.op {
		case opRead:
			return o.kind == outUnknown || o.v == s, s
		case opWrite:
			return true, i.a
		case opDelete:
			return true, absent
		case opAppend:
			if s == absent {
				return true, `"` + i.a + `"`
			}
			if len(s) < 2 || s[0] != '"' {
				return false, s
			}
			return true, s[:len(s)-1] + i.a + `"`
		default: // cas
			switch o.kind {
			case outDone:
				return i.a == s, i.b
			case outCasFailed:
				return i.a != s, s
			default:
				if i.a == s {
					return true, i.b
				}
				return true, s
			}
		}
	}
	return model{
		name:    "register",
		prepare: prepare,
		porc: porcupine.Model{
			Init: func() interface{} { return absent },
			Step: step,
			Hash: hashState,
		},
	}
}

func appendModel() model {
	prepare := func(f string, in []byte) (input, error) {
		switch f {
		case "read", "get":
			return input{op: opRead}, nil
		case "write", "put":
			v, err := stringContent(in)
			return input{op: opWrite, a: v}, err
		case "append":
			v, err := stringContent(in)
			return input{op: opAppend, a: v}, err
		}
		return input{}, fmt.Errorf("unknown f %q for the append model", f)
	}
	step := func(st, in, out interface{}) (bool, interface{}) {
		s := st.(string)
		i := in.(input)
		o := out.(output)
		switch i.op {
		case opRead:
			return o.kind == outUnknown || o.v == s, s
		case opWrite:
			return true, i.a
		default:
			return true, s + i.a
		}
	}
	return model{
		name:    "append",
		prepare: prepare,
		porc: porcupine.Model{
			Init: func() interface{} { return "" },
			Step: step,
			Hash: hashState,
		},
	}
}

// load reads a history into Porcupine operations, one slice per key.
func load(path string, m model) (map[string][]porcupine.Operation, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	type open struct {
		key  string
		in   input
		call int64
		line int
	}
	openOps := map[int64]open{}
	parts := map[string][]porcupine.Operation{}
	seq := int64(0)
	count := 0
	line := 0
	for len(data) > 0 {
		line++
		nl := bytes.IndexByte(data, '\n')
		var text []byte
		if nl < 0 {
			text, data = data, nil
		} else {
			text, data = data[:nl], data[nl+1:]
		}
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		ev, err := parseLine(text)
		if err != nil {
			return nil, 0, fmt.Errorf("line %d: %v", line, err)
		}
		if ev.nemesis {
			continue
		}
		pos := seq
		seq++
		if ev.kind == "invoke" {
			if _, busy := openOps[ev.process]; busy {
				return nil, 0, fmt.Errorf("line %d: two open operations on process %d", line, ev.process)
			}
			in, err := m.prepare(ev.f, ev.value)
			if err != nil {
				return nil, 0, fmt.Errorf("line %d: %v", line, err)
			}
			openOps[ev.process] = open{key: ev.key, in: in, call: pos, line: line}
			continue
		}
		op, ok := openOps[ev.process]
		if !ok {
			return nil, 0, fmt.Errorf("line %d: completion without an open invoke", line)
		}
		delete(openOps, ev.process)
		var out output
		ret := pos
		switch ev.kind {
		case "ok":
			out.kind = outDone
			if op.in.op == opRead {
				out.kind = outValue
				if m.name == "append" {
					out.v, err = stringContent(ev.value)
					if err != nil {
						return nil, 0, fmt.Errorf("line %d: %v", line, err)
					}
				} else {
					out.v = string(ev.value)
					if out.v == "" {
						out.v = absent
					}
				}
			}
		case "fail":
			if op.in.op == opCas && ev.errText == "precondition-failed" && m.name == "register" {
				out.kind = outCasFailed
			} else {
				continue // it did not happen
			}
		case "info":
			out.kind = outUnknown
			ret = -1
		default:
			return nil, 0, fmt.Errorf("line %d: unknown type %q", line, ev.kind)
		}
		parts[op.key] = append(parts[op.key], porcupine.Operation{ClientId: 0, Input: op.in, Call: op.call, Output: out, Return: ret})
		count++
	}
	for _, op := range openOps {
		parts[op.key] = append(parts[op.key], porcupine.Operation{Input: op.in, Call: op.call, Output: output{kind: outUnknown}, Return: -1})
		count++
	}
	// Unknown outcomes stay open until after the last event.
	for _, ops := range parts {
		for i := range ops {
			if ops[i].Return < 0 {
				ops[i].Return = seq + int64(i)
			}
		}
	}
	return parts, count, nil
}

func main() {
	modelName := flag.String("model", "register", "register (= kv, per key) or append")
	timeout := flag.Duration("timeout", 300*time.Second, "search time per file (0: none)")
	flag.Parse()
	var m model
	switch *modelName {
	case "register", "kv":
		m = registerModel()
	case "append":
		m = appendModel()
	default:
		fmt.Fprintf(os.Stderr, "unknown model %q\n", *modelName)
		os.Exit(3)
	}
	code := 0
	worst := func(c int) {
		rank := map[int]int{0: 0, 2: 1, 1: 2, 3: 3}
		if rank[c] > rank[code] {
			code = c
		}
	}
	for _, path := range flag.Args() {
		t0 := time.Now()
		parts, count, err := load(path, m)
		if err != nil {
			fmt.Printf("%s: bad input: %v\n", path, err)
			worst(3)
			continue
		}
		parsed := time.Since(t0)
		// Porcupine partitions with the model's Partition function; the history is already
		// split by key, so hand it the parts.
		var all []porcupine.Operation
		bounds := []int{0}
		for _, ops := range parts {
			all = append(all, ops...)
			bounds = append(bounds, len(all))
		}
		pm := m.porc
		pm.Partition = func(h []porcupine.Operation) [][]porcupine.Operation {
			out := make([][]porcupine.Operation, 0, len(bounds)-1)
			for i := 0; i+1 < len(bounds); i++ {
				out = append(out, h[bounds[i]:bounds[i+1]])
			}
			return out
		}
		t1 := time.Now()
		res := porcupine.CheckOperationsTimeout(pm, all, *timeout)
		checked := time.Since(t1)
		verdict := "UNKNOWN"
		switch res {
		case porcupine.Ok:
			verdict = "LINEARIZABLE"
		case porcupine.Illegal:
			verdict = "NOT LINEARIZABLE"
			worst(1)
		default:
			worst(2)
		}
		fmt.Printf("%s: %s (porcupine, model %s, %d operations, %d partitions, parse %.1f ms, check %.1f ms)\n",
			path, verdict, m.name, count, len(parts), parsed.Seconds()*1e3, checked.Seconds()*1e3)
	}
	os.Exit(code)
}
