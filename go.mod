module github.com/shoal-p2p/shoal

go 1.26
