module weft-go-http

go 1.19
