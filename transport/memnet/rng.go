package memnet

import (
	"math/bits"
	randv2 "math/rand/v2"
)

// rng is the network's private random stream: a PCG generator seeded from
// Config.Seed, called directly (no interface) because it sits on the send
// path. It is separate from the *rand.Rand handed out by Network.Rand, so a
// caller drawing numbers does not shift the network's fault decisions.
type rng struct{ pcg randv2.PCG }

func newRNG(seed int64) rng {
	return rng{pcg: *randv2.NewPCG(uint64(seed), 0x6d656d6e6574) /* "memnet" */}
}

// float returns a uniform float64 in [0,1).
func (r *rng) float() float64 { return float64(r.pcg.Uint64()>>11) * 0x1p-53 }

// uintn returns a uniform integer in [0,n), n > 0 (Lemire's method).
func (r *rng) uintn(n uint64) uint64 {
	hi, lo := bits.Mul64(r.pcg.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(r.pcg.Uint64(), n)
		}
	}
	return hi
}
