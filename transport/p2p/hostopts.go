package p2p

import (
	"log/slog"

	"github.com/libp2p/go-libp2p"
)

// HostOptions returns the libp2p options New would use for cfg (zero fields
// take their defaults): identity, listen addresses, transports, security,
// muxer and NAT settings. It lets tools build plain libp2p hosts configured
// exactly as a Transport's — the bare-libp2p baselines of `shoal bench`
// compare against them — without a second copy of the option list that could
// drift from New's.
func HostOptions(cfg Config) ([]libp2p.Option, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	priv, err := loadIdentity(cfg.DataDir, log.With("subsys", "p2p"))
	if err != nil {
		return nil, err
	}
	return hostOptions(cfg, priv), nil
}
