//go:build !race

package node

// raceEnabled reports a build with the race detector, which slows the
// memory tests tenfold and changes what they measure.
const raceEnabled = false
