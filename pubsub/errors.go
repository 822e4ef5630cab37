package pubsub

import "errors"

// Errors returned by the package. Errors are wrapped with context; compare
// with errors.Is.
var (
	// ErrNoSubscribers: an anycast found no subscriber that accepted it (the
	// topic has none, or every one declined).
	ErrNoSubscribers = errors.New("pubsub: no subscriber accepted the message")
	// ErrBadTopic: the topic name is empty or longer than Config.MaxTopicLen.
	ErrBadTopic = errors.New("pubsub: bad topic name")
	// ErrTooLarge: the message does not fit in Config.MaxMessage.
	ErrTooLarge = errors.New("pubsub: message too large")
	// ErrClosed is returned after PubSub.Close (or Subscription.Close).
	ErrClosed = errors.New("pubsub: closed")
)
