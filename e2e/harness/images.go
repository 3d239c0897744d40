package harness

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"testing"
)

// GradientJPEG encodes a w x h colour gradient: a real photo-like input for
// the resizer, made here so no test depends on a file outside the repo.
func GradientJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{R: uint8(255 * x / w), G: uint8(255 * y / h), B: uint8((x + y) % 256), A: 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
