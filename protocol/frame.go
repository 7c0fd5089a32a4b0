package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// A frame is one protobuf message preceded by its length as a minimal
// unsigned varint (protobuf's "varint-length-delimited" form). Every read
// names a cap: a length prefix above it is refused as soon as it is read,
// before any memory is allocated for the body or any of it is read.

// WriteFrame writes b as one frame with a single Write call. It refuses b
// longer than max with an error wrapping [ErrFrameTooLarge].
func WriteFrame(w io.Writer, b []byte, max int) error {
	if len(b) > max {
		return fmt.Errorf("%w: %d bytes, cap %d", ErrFrameTooLarge, len(b), max)
	}
	buf := make([]byte, 0, binary.MaxVarintLen64+len(b))
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	_, err := w.Write(append(buf, b...))
	return err
}

// WriteMsg writes m as one frame with a single Write call, refusing a
// message longer than max as [WriteFrame] does.
func WriteMsg(w io.Writer, m proto.Message, max int) error {
	buf, err := encodeMsg(m, max)
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

// encodeMsg encodes m as one frame, refusing a message longer than max
// with an error wrapping [ErrFrameTooLarge].
func encodeMsg(m proto.Message, max int) ([]byte, error) {
	n := proto.Size(m)
	if n > max {
		return nil, fmt.Errorf("%w: %d bytes, cap %d", ErrFrameTooLarge, n, max)
	}
	buf := make([]byte, 0, binary.MaxVarintLen64+n)
	buf = binary.AppendUvarint(buf, uint64(n))
	buf, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf, m)
	if err != nil {
		return nil, fmt.Errorf("protocol: encoding message: %w", err)
	}
	return buf, nil
}

// ReadFrame reads one frame of at most max bytes from r and returns its
// body. It reads nothing past the frame. Errors wrap [ErrFrameTooLarge] (the
// body is then left unread), [ErrTruncated] (also for a stream that ends
// before the frame: that error wraps io.EOF too), [ErrMalformed] (a prefix
// that is not a minimal uvarint), or are r's own.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	n, err := readFrameLen(r, max)
	if err != nil {
		return nil, err
	}
	return readFrameBody(r, n)
}

// ReadMsg reads one frame of at most max bytes from r into m. Errors are
// those of [ReadFrame], or wrap [ErrMalformed] if the body does not decode.
func ReadMsg(r io.Reader, m proto.Message, max int) error {
	b, err := ReadFrame(r, max)
	if err != nil {
		return err
	}
	return unmarshal(b, m)
}

func unmarshal(b []byte, m proto.Message) error {
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// readFrameLen reads a length prefix one byte at a time, so that nothing
// past it is consumed, and checks it against max.
func readFrameLen(r io.Reader, max int) (int, error) {
	var x uint64
	var b [1]byte
	for i := 0; ; i++ {
		if i == binary.MaxVarintLen64 {
			return 0, fmt.Errorf("%w: length prefix too long", ErrMalformed)
		}
		if _, err := io.ReadFull(r, b[:]); err != nil {
			if errors.Is(err, io.EOF) {
				if i == 0 {
					return 0, fmt.Errorf("%w: no frame: %w", ErrTruncated, io.EOF)
				}
				return 0, fmt.Errorf("%w: inside length prefix: %w", ErrTruncated, io.ErrUnexpectedEOF)
			}
			return 0, err
		}
		c := b[0]
		if i == binary.MaxVarintLen64-1 && c > 1 {
			return 0, fmt.Errorf("%w: length prefix overflows", ErrMalformed)
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, fmt.Errorf("%w: length prefix not minimal", ErrMalformed)
			}
			break
		}
	}
	if x > uint64(max) {
		return 0, fmt.Errorf("%w: %d bytes, cap %d", ErrFrameTooLarge, x, max)
	}
	return int(x), nil
}

// readFrameBody reads exactly n bytes.
func readFrameBody(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: %d-byte body: %w", ErrTruncated, n, io.ErrUnexpectedEOF)
		}
		return nil, err
	}
	return b, nil
}
