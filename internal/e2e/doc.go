// Package e2e holds tests that run real `shoal` processes on loopback:
// kill -9, SIGSTOP/SIGCONT and restarts from data directories, with the
// histories their clients record checked for linearizability.
package e2e
