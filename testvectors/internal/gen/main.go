// Command gen writes the test vectors and their schemas into the current
// directory; go generate runs it in testvectors/.
package main

import (
	"log"

	"github.com/scripnet/scrip/testvectors/internal/vectorgen"
)

func main() {
	if err := vectorgen.Generate("."); err != nil {
		log.Fatal(err)
	}
}
