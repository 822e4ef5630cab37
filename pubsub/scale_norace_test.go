//go:build !race

package pubsub

// scaleNodes is the ring size of TestScale. Under the race detector a ring
// of 1,000 node runtimes takes minutes, so race builds use 200
// (scale_race_test.go); CI runs the 1,000-node test without -race.
const scaleNodes = 1000

// raceEnabled trims the slowest tests under the race detector.
const raceEnabled = false
