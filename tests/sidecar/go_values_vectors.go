// Prints, for each JSON text on stdin, what Go makes of it as daprd's HTTP state API does:
// the input, encoding/json's Marshal of the value decoded into `any`, and json-iterator's
// ConfigFastest Marshal of it (contrib's state.redis), tab-separated; or the decoder's error.
// It produced the vectors of test_go_values.py. On Debian:
//
//	apt-get install golang-go golang-github-json-iterator-go-dev
//	GOPATH=/usr/share/gocode GO111MODULE=off go run go_values_vectors.go < inputs.txt
//
// Go before 1.22 writes \b and \f as \u0008 and \u000c; daprd 1.18 is built with Go 1.26.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	jsoniter "github.com/json-iterator/go"
)

func main() {
	lines := bufio.NewScanner(os.Stdin)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	for lines.Scan() {
		var value any
		if err := json.Unmarshal(lines.Bytes(), &value); err != nil {
			fmt.Printf("%s\tERR %v\n", lines.Text(), err)
			continue
		}
		std, _ := json.Marshal(value)
		fastest, err := jsoniter.ConfigFastest.Marshal(value)
		if err != nil {
			fastest = []byte("ERR " + err.Error())
		}
		fmt.Printf("%s\t%s\t%s\n", lines.Text(), std, fastest)
	}
}
