module github.com/courier/courier

go 1.26.8

require (
	github.com/caarlos0/env/v11 v11.4.2
	github.com/cenk/backoff v2.2.1+incompatible
	github.com/facebookgo/clock v0.0.0-20150410010913-600d898af40a
	github.com/julienschmidt/httprouter v1.3.0
	github.com/rs/xid v1.6.0
	github.com/rs/zerolog v1.35.1
	github.com/rubyist/circuitbreaker v2.2.1+incompatible
	go.uber.org/goleak v1.3.0
)

require (
	github.com/mattn/go-colorable v0.1.14 // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
	github.com/peterbourgon/g2s v0.0.0-20170223122336-d4e7ad98afea // indirect
	golang.org/x/sys v0.29.0 // indirect
)
