// Package pb holds the protobuf messages of scrip's wire protocols, package
// scrip.v1: the stream envelope (envelope.proto), signed price schedules
// (schedule.proto), the storage service (storage.proto) and the mint service
// (mint.proto). Package protocol frames, signs, checks and sends them; use it
// rather than this package where you can.
//
// The .proto files are the source; the .pb.go files are generated from them
// and committed. To regenerate after editing a .proto file, install the
// compiler and the Go plugin at the pinned version, then run go generate:
//
//	apt-get install -y protobuf-compiler
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go generate ./protocol/pb
//
// protoc-gen-go must be on PATH (it installs to $(go env GOPATH)/bin).
// Commit the .proto and .pb.go files together.
package pb

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative envelope.proto schedule.proto storage.proto mint.proto
