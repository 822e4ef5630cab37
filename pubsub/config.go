package pubsub

import (
	"fmt"
	"log/slog"
	"time"
)

// Config tunes a PubSub. Start from DefaultConfig (LAN), LocalConfig (one
// machine, tests) or WANConfig and change what you need.
type Config struct {
	// MaxTopicLen is the longest topic name, in bytes. Default 256. Every
	// node of a ring should use the same value: a node drops tree messages
	// for longer names.
	MaxTopicLen int
	// MaxMessage bounds one encoded pubsub message (the data plus the topic
	// and about 40 bytes of header; an anycast adds its origin's addresses),
	// in bytes. Default 1 MiB, the limit of services and of node.Config's
	// MaxMessage; it must not exceed the node's.
	MaxMessage int
	// HeartbeatInterval is how often a child tells each parent it is alive
	// (one message per parent for all topics, answered by one message) and
	// how often a root checks that it still owns its topics. Default 1s.
	// Shorter repairs faster and costs 2 messages per tree edge per interval.
	HeartbeatInterval time.Duration
	// ParentTimeout: a child that has heard nothing from its parent for this
	// long re-subscribes through the ring, and a parent that has heard
	// nothing from a child for this long drops it (and prunes itself when
	// nothing is left below it). Default 3.5s; at least 2 × HeartbeatInterval.
	ParentTimeout time.Duration
	// SubscribeRetry is how long a subscribe waits for its parent's answer
	// before it is routed again. Default 1s.
	SubscribeRetry time.Duration
	// SubscribeTimeout bounds Subscribe when its context has no deadline.
	// Default 10s.
	SubscribeTimeout time.Duration
	// PublishRetry is how long Publish waits for the root's acknowledgement
	// before it sends the message again (same publish ID: the root
	// sequences it once). Default 1s.
	PublishRetry time.Duration
	// PublishTimeout bounds Publish when its context has no deadline.
	// Default 10s.
	PublishTimeout time.Duration
	// AnycastTimeout bounds Anycast when its context has no deadline, and is
	// how long a node keeps the state of an anycast search. Default 5s.
	AnycastTimeout time.Duration
	// ReorderTimeout is how long a node holds a message that arrived ahead
	// of a missing one (asking its parent to resend the hole) before it
	// gives up on the hole and delivers with a Gap. Default 250ms.
	ReorderTimeout time.Duration
	// History is how many recent messages each tree node keeps per topic, to
	// replay to a child that re-attaches after a repair or reports a hole.
	// Default 128; -1 keeps none (gaps after every repair).
	History int
	// HistoryBytes bounds the same history in bytes per topic. Default 8 MiB.
	HistoryBytes int
	// QueueLen bounds the deliveries waiting for one subscription's handler;
	// beyond it deliveries are dropped (the next one reports the Gap) and
	// anycasts declined. Default 1024.
	QueueLen int
	// Seed seeds the random choices (anycast child order, publish IDs).
	// Default 0: derived from the node's ID.
	Seed int64
	// Logger receives logs with subsys=pubsub. Nil discards.
	Logger *slog.Logger
}

// DefaultConfig is for a LAN ring with the node's default (ring) timings.
func DefaultConfig() Config {
	return Config{
		MaxTopicLen:       256,
		MaxMessage:        1 << 20,
		HeartbeatInterval: time.Second,
		ParentTimeout:     3500 * time.Millisecond,
		SubscribeRetry:    time.Second,
		SubscribeTimeout:  10 * time.Second,
		PublishRetry:      time.Second,
		PublishTimeout:    10 * time.Second,
		AnycastTimeout:    5 * time.Second,
		ReorderTimeout:    250 * time.Millisecond,
		History:           128,
		HistoryBytes:      8 << 20,
		QueueLen:          1024,
	}
}

// LocalConfig suits rings on one machine (ring.LocalConfig) and tests:
// faster heartbeats, repairs in under 2 seconds.
func LocalConfig() Config {
	c := DefaultConfig()
	c.HeartbeatInterval = 400 * time.Millisecond
	c.ParentTimeout = 1300 * time.Millisecond
	c.SubscribeRetry = 600 * time.Millisecond
	c.PublishRetry = 500 * time.Millisecond
	c.ReorderTimeout = 100 * time.Millisecond
	return c
}

// WANConfig is for rings spread over the internet (ring.WANConfig).
func WANConfig() Config {
	c := DefaultConfig()
	c.HeartbeatInterval = 5 * time.Second
	c.ParentTimeout = 16 * time.Second
	c.SubscribeRetry = 3 * time.Second
	c.PublishRetry = 3 * time.Second
	c.PublishTimeout = 30 * time.Second
	c.AnycastTimeout = 15 * time.Second
	c.ReorderTimeout = time.Second
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.MaxTopicLen < 1 || c.MaxTopicLen > maxWireTopic:
		return fmt.Errorf("pubsub: MaxTopicLen must be in [1, %d], got %d", maxWireTopic, c.MaxTopicLen)
	case c.MaxMessage < 256:
		return fmt.Errorf("pubsub: MaxMessage must be at least 256 bytes, got %d", c.MaxMessage)
	case c.HeartbeatInterval <= 0:
		return fmt.Errorf("pubsub: HeartbeatInterval must be > 0, got %v", c.HeartbeatInterval)
	case c.ParentTimeout < 2*c.HeartbeatInterval:
		return fmt.Errorf("pubsub: ParentTimeout (%v) must be at least 2 × HeartbeatInterval (%v)", c.ParentTimeout, c.HeartbeatInterval)
	case c.SubscribeRetry <= 0:
		return fmt.Errorf("pubsub: SubscribeRetry must be > 0, got %v", c.SubscribeRetry)
	case c.SubscribeTimeout <= 0:
		return fmt.Errorf("pubsub: SubscribeTimeout must be > 0, got %v", c.SubscribeTimeout)
	case c.PublishRetry <= 0:
		return fmt.Errorf("pubsub: PublishRetry must be > 0, got %v", c.PublishRetry)
	case c.PublishTimeout <= 0:
		return fmt.Errorf("pubsub: PublishTimeout must be > 0, got %v", c.PublishTimeout)
	case c.AnycastTimeout <= 0:
		return fmt.Errorf("pubsub: AnycastTimeout must be > 0, got %v", c.AnycastTimeout)
	case c.ReorderTimeout <= 0:
		return fmt.Errorf("pubsub: ReorderTimeout must be > 0, got %v", c.ReorderTimeout)
	case c.History < -1:
		return fmt.Errorf("pubsub: History must be >= -1 (-1: none), got %d", c.History)
	case c.HistoryBytes < 0:
		return fmt.Errorf("pubsub: HistoryBytes must be >= 0, got %d", c.HistoryBytes)
	case c.QueueLen < 1:
		return fmt.Errorf("pubsub: QueueLen must be >= 1, got %d", c.QueueLen)
	}
	return nil
}
