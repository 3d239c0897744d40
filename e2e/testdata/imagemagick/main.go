// Command convert is a stand-in for ImageMagick's convert, built FROM scratch
// into the local v4tech/imagemagick image so that the seed's resize example
// runs with no network. It supports exactly what the example uses:
//
//	convert INPUT -resize P% OUTPUT
//
// INPUT is "-" (stdin) or a file, JPEG or PNG (detected from the bytes);
// OUTPUT is "fd:1", "-" or a file, written in the input's format. The
// resampling is a box filter (area average). Anything else fails with a
// message and exit code 1.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"strconv"
	"strings"
)

const usage = "usage: convert INPUT -resize P% OUTPUT (INPUT: - or file, JPEG or PNG; OUTPUT: fd:1, - or file)"

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "convert (hyperfunc stand-in): %v\n%s\n", err, usage)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 4 || args[1] != "-resize" {
		return fmt.Errorf("unsupported arguments %q", args)
	}
	pct, err := parsePercent(args[2])
	if err != nil {
		return err
	}
	var in []byte
	if args[0] == "-" {
		in, err = io.ReadAll(stdin)
	} else {
		in, err = os.ReadFile(args[0])
	}
	if err != nil {
		return err
	}
	src, format, err := image.Decode(bytes.NewReader(in))
	if err != nil {
		return fmt.Errorf("decoding input: %w (only JPEG and PNG are supported)", err)
	}
	b := src.Bounds()
	w := max(1, int(float64(b.Dx())*pct/100+0.5))
	h := max(1, int(float64(b.Dy())*pct/100+0.5))
	dst := Resize(src, w, h)

	var out bytes.Buffer
	switch format {
	case "jpeg":
		err = jpeg.Encode(&out, dst, &jpeg.Options{Quality: 92})
	case "png":
		err = png.Encode(&out, dst)
	default:
		err = fmt.Errorf("unsupported format %q", format)
	}
	if err != nil {
		return err
	}
	switch args[3] {
	case "fd:1", "-":
		_, err = stdout.Write(out.Bytes())
		return err
	default:
		return os.WriteFile(args[3], out.Bytes(), 0o644)
	}
}

func parsePercent(s string) (float64, error) {
	num, ok := strings.CutSuffix(s, "%")
	if !ok {
		return 0, errors.New("only -resize P% is supported")
	}
	p, err := strconv.ParseFloat(num, 64)
	if err != nil || p <= 0 || p > 1000 {
		return 0, fmt.Errorf("bad percentage %q", s)
	}
	return p, nil
}

// Resize scales src to w x h with a box filter: each destination pixel is the
// average of the source pixels its footprint covers (at least one).
func Resize(src image.Image, w, h int) *image.RGBA {
	b := src.Bounds()
	sw, sh := b.Dx(), b.Dy()
	pix := toRGBA(src)
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	for dy := 0; dy < h; dy++ {
		y0 := dy * sh / h
		y1 := max(y0+1, (dy+1)*sh/h)
		for dx := 0; dx < w; dx++ {
			x0 := dx * sw / w
			x1 := max(x0+1, (dx+1)*sw/w)
			var r, g, bl, a, n uint64
			for y := y0; y < y1; y++ {
				row := pix.Pix[y*pix.Stride:]
				for x := x0; x < x1; x++ {
					p := row[x*4 : x*4+4]
					r, g, bl, a = r+uint64(p[0]), g+uint64(p[1]), bl+uint64(p[2]), a+uint64(p[3])
					n++
				}
			}
			o := dst.PixOffset(dx, dy)
			dst.Pix[o], dst.Pix[o+1], dst.Pix[o+2], dst.Pix[o+3] =
				uint8((r+n/2)/n), uint8((g+n/2)/n), uint8((bl+n/2)/n), uint8((a+n/2)/n)
		}
	}
	return dst
}

// toRGBA copies src into a zero-based RGBA (premultiplied, so averaging is
// right for transparent pixels too).
func toRGBA(src image.Image) *image.RGBA {
	b := src.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	if yc, ok := src.(*image.YCbCr); ok {
		for y := 0; y < b.Dy(); y++ {
			for x := 0; x < b.Dx(); x++ {
				yi, ci := yc.YOffset(b.Min.X+x, b.Min.Y+y), yc.COffset(b.Min.X+x, b.Min.Y+y)
				r, g, bl := color.YCbCrToRGB(yc.Y[yi], yc.Cb[ci], yc.Cr[ci])
				o := out.PixOffset(x, y)
				out.Pix[o], out.Pix[o+1], out.Pix[o+2], out.Pix[o+3] = r, g, bl, 255
			}
		}
		return out
	}
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			out.Set(x, y, src.At(b.Min.X+x, b.Min.Y+y))
		}
	}
	return out
}
