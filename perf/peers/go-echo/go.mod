module weft-go-echo

go 1.19
