//go:build tools

// Package tools pins SeaweedFS's `weed` command as a dependency of this wrapper module, so that `go mod tidy`
// resolves its modules and `go build github.com/seaweedfs/seaweedfs/weed` builds it at the version go.mod requires.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
