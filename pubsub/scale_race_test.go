//go:build race

package pubsub

// scaleNodes is smaller under the race detector; see scale_norace_test.go.
const scaleNodes = 200

// raceEnabled trims the slowest tests under the race detector.
const raceEnabled = true
