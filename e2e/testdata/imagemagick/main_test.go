package main

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
)

func gradient(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 128, 255})
		}
	}
	return img
}

func TestResizeJPEGAndPNG(t *testing.T) {
	src := gradient(640, 480)
	for _, tc := range []struct {
		format string
		encode func(*bytes.Buffer) error
	}{
		{"jpeg", func(b *bytes.Buffer) error { return jpeg.Encode(b, src, &jpeg.Options{Quality: 90}) }},
		{"png", func(b *bytes.Buffer) error { return png.Encode(b, src) }},
	} {
		var in, out bytes.Buffer
		if err := tc.encode(&in); err != nil {
			t.Fatal(err)
		}
		if err := run([]string{"-", "-resize", "50%", "fd:1"}, &in, &out); err != nil {
			t.Fatal(err)
		}
		cfg, format, err := image.DecodeConfig(bytes.NewReader(out.Bytes()))
		if err != nil || format != tc.format || cfg.Width != 320 || cfg.Height != 240 {
			t.Fatalf("%s: got %s %dx%d, %v", tc.format, format, cfg.Width, cfg.Height, err)
		}
	}
}

func TestResizeAverages(t *testing.T) {
	src := image.NewRGBA(image.Rect(0, 0, 2, 2))
	src.Set(0, 0, color.RGBA{0, 0, 0, 255})
	src.Set(1, 0, color.RGBA{200, 0, 0, 255})
	src.Set(0, 1, color.RGBA{0, 100, 0, 255})
	src.Set(1, 1, color.RGBA{200, 100, 40, 255})
	got := Resize(src, 1, 1).RGBAAt(0, 0)
	if got != (color.RGBA{100, 50, 10, 255}) {
		t.Fatalf("got %v", got)
	}
}

func TestRejects(t *testing.T) {
	for _, args := range [][]string{
		{"-", "-resize", "50", "fd:1"},
		{"-", "-rotate", "90", "fd:1"},
		{"-", "-resize", "0%", "fd:1"},
		{"-"},
	} {
		if err := run(args, bytes.NewReader(nil), &bytes.Buffer{}); err == nil {
			t.Fatalf("%q accepted", args)
		}
	}
	if err := run([]string{"-", "-resize", "50%", "fd:1"}, bytes.NewReader([]byte("GIF89a...")), &bytes.Buffer{}); err == nil {
		t.Fatal("garbage input accepted")
	}
}
