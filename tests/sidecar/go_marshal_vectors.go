// Prints, for each hex-encoded JSON text on stdin, what daprd writes of it again, hex-encoded
// and space-separated: json.Marshal of the value contrib's unmarshalPrecise decodes (one
// json.Decoder Decode with UseNumber: a published event's data), then json.Marshal of the
// value json.Unmarshal decodes into `any` (the outbox relay, bulk deliveries); "E" where
// decoding fails. It produced the vectors of test_go_marshal.py:
//
//	go run go_marshal_vectors.go < inputs.hex
//
// Go before 1.22 writes \b and \f as \u0008 and \u000c; daprd 1.18 is built with Go 1.26.
package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
)

func precise(data []byte) ([]byte, error) {
	var v any
	d := json.NewDecoder(bytes.NewBuffer(data))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func plain(data []byte) ([]byte, error) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func show(out []byte, err error) string {
	if err != nil {
		return "E"
	}
	return hex.EncodeToString(out)
}

func main() {
	lines := bufio.NewScanner(os.Stdin)
	lines.Buffer(make([]byte, 1<<20), 1<<26)
	for lines.Scan() {
		in, _ := hex.DecodeString(lines.Text())
		fmt.Println(show(precise(in)), show(plain(in)))
	}
}
