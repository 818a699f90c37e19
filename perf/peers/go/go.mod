module weft-peers

go 1.19
