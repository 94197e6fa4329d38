module kollect.dev/hack/go-canonical

go 1.22
