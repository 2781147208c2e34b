module coffer.local/kind/pause

go 1.22
