//! A minimal RGB canvas and PNG encoder, so `adag plot` writes a PNG without Graphviz.
//!
//! The cluster graph needs filled boxes, outlined boxes, thick semi-transparent lines and
//! short labels; nothing more. Lines are covered by distance to the segment (a cheap
//! anti-alias); text is DejaVu Sans rasterised by `ab_glyph` (a hand-made bitmap font made "g"
//! read as "9"). The PNG is 8-bit RGB, unfiltered scanlines in one zlib stream (flate2).

use std::io::Write;
use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};

/// Label size in pixels.
pub const FONT_PX: f32 = 12.0;

/// DejaVu Sans (Bitstream Vera licence, see `fonts/DejaVuSans-LICENSE.txt`), bundled so that
/// PNGs look the same everywhere and need no system fonts.
static FONT_BYTES: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| {
        FontRef::try_from_slice(FONT_BYTES).expect("the bundled DejaVu Sans parses")
    })
}

/// Width of `text` in pixels in the label font.
pub fn text_width(text: &str) -> f64 {
    let scaled = font().as_scaled(PxScale::from(FONT_PX));
    let mut w = 0.0f32;
    let mut prev = None;
    for ch in text.chars() {
        let id = scaled.glyph_id(ch);
        if let Some(p) = prev {
            w += scaled.kern(p, id);
        }
        w += scaled.h_advance(id);
        prev = Some(id);
    }
    w as f64
}

/// An RGB colour.
pub type Rgb = [u8; 3];

/// A width × height RGB image.
#[derive(Debug, Clone, PartialEq)]
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major pixels.
    pub pixels: Vec<Rgb>,
}

impl Canvas {
    /// A canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        Canvas {
            width,
            height,
            pixels: vec![background; width * height],
        }
    }

    /// The pixel at (x, y), if inside.
    pub fn get(&self, x: usize, y: usize) -> Option<Rgb> {
        (x < self.width && y < self.height).then(|| self.pixels[y * self.width + x])
    }

    /// Blends `colour` over pixel (x, y) with opacity `alpha` in [0, 1]; outside is ignored.
    fn blend(&mut self, x: i64, y: i64, colour: Rgb, alpha: f64) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return;
        }
        let p = &mut self.pixels[y as usize * self.width + x as usize];
        for (c, &src) in p.iter_mut().zip(&colour) {
            *c = (*c as f64 * (1.0 - alpha) + src as f64 * alpha).round() as u8;
        }
    }

    /// Fills the rectangle with top-left (x, y) and size w × h.
    pub fn fill_rect(&mut self, x: f64, y: f64, w: f64, h: f64, colour: Rgb) {
        let (x0, y0) = (x.round() as i64, y.round() as i64);
        let (x1, y1) = ((x + w).round() as i64, (y + h).round() as i64);
        for py in y0..y1 {
            for px in x0..x1 {
                self.blend(px, py, colour, 1.0);
            }
        }
    }

    /// Draws a one-pixel outline of the rectangle.
    pub fn stroke_rect(&mut self, x: f64, y: f64, w: f64, h: f64, colour: Rgb) {
        let (x0, y0) = (x.round() as i64, y.round() as i64);
        let (x1, y1) = ((x + w).round() as i64 - 1, (y + h).round() as i64 - 1);
        for px in x0..=x1 {
            self.blend(px, y0, colour, 1.0);
            self.blend(px, y1, colour, 1.0);
        }
        for py in y0..=y1 {
            self.blend(x0, py, colour, 1.0);
            self.blend(x1, py, colour, 1.0);
        }
    }

    /// Draws a line of the given width from (x0, y0) to (x1, y1) with opacity `alpha`.
    #[allow(clippy::too_many_arguments)]
    pub fn line(
        &mut self,
        x0: f64,
        y0: f64,
        x1: f64,
        y1: f64,
        width: f64,
        colour: Rgb,
        alpha: f64,
    ) {
        let half = width.max(1.0) / 2.0;
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len2 = dx * dx + dy * dy;
        let pad = half + 1.0;
        let (bx0, bx1) = (x0.min(x1) - pad, x0.max(x1) + pad);
        let (by0, by1) = (y0.min(y1) - pad, y0.max(y1) + pad);
        for py in by0.floor() as i64..=by1.ceil() as i64 {
            for px in bx0.floor() as i64..=bx1.ceil() as i64 {
                let (cx, cy) = (px as f64 + 0.5, py as f64 + 0.5);
                let t = if len2 > 0.0 {
                    (((cx - x0) * dx + (cy - y0) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let d = ((cx - x0 - t * dx).powi(2) + (cy - y0 - t * dy).powi(2)).sqrt();
                let cover = (half + 0.5 - d).clamp(0.0, 1.0);
                if cover > 0.0 {
                    self.blend(px, py, colour, cover * alpha);
                }
            }
        }
    }

    /// Writes `text` centred on `cx` with its top at `top`, in DejaVu Sans at [`FONT_PX`],
    /// anti-aliased; characters the font lacks show as its missing-glyph box.
    pub fn text_centred(&mut self, cx: f64, top: f64, text: &str, colour: Rgb) {
        let font = font();
        let scaled = font.as_scaled(PxScale::from(FONT_PX));
        let x0 = cx - text_width(text) / 2.0;
        let baseline = top + scaled.ascent() as f64;
        let mut x = x0 as f32;
        let mut prev = None;
        for ch in text.chars() {
            let id = scaled.glyph_id(ch);
            if let Some(p) = prev {
                x += scaled.kern(p, id);
            }
            let g = id.with_scale_and_position(FONT_PX, point(x, baseline as f32));
            x += scaled.h_advance(id);
            prev = Some(id);
            if let Some(outline) = font.outline_glyph(g) {
                let b = outline.px_bounds();
                outline.draw(|gx, gy, cov| {
                    let (px, py) = (b.min.x as i64 + gx as i64, b.min.y as i64 + gy as i64);
                    self.blend(px, py, colour, cov.clamp(0.0, 1.0) as f64);
                });
            }
        }
    }

    /// `text`, cut with "…" so that it is at most `max_width` pixels wide in the label font.
    pub fn fit(&self, text: &str, max_width: f64) -> String {
        if text_width(text) <= max_width {
            return text.to_string();
        }
        let chars: Vec<char> = text.chars().collect();
        let mut n = chars.len();
        while n > 0 {
            n -= 1;
            let cut: String = chars[..n].iter().collect::<String>() + "…";
            if text_width(&cut) <= max_width {
                return cut;
            }
        }
        "…".into()
    }

    /// A filled arrowhead of the given length at `to`, pointing from `from` to `to`.
    pub fn arrowhead(&mut self, from: (f64, f64), to: (f64, f64), len: f64, colour: Rgb) {
        let (dx, dy) = (to.0 - from.0, to.1 - from.1);
        let d = (dx * dx + dy * dy).sqrt();
        if d == 0.0 {
            return;
        }
        let (ux, uy) = (dx / d, dy / d);
        let (bx, by) = (to.0 - ux * len, to.1 - uy * len);
        let half = len * 0.45;
        let tri = [
            to,
            (bx - uy * half, by + ux * half),
            (bx + uy * half, by - ux * half),
        ];
        let (x0, x1) = (
            tri.iter().map(|p| p.0).fold(f64::MAX, f64::min),
            tri.iter().map(|p| p.0).fold(f64::MIN, f64::max),
        );
        let (y0, y1) = (
            tri.iter().map(|p| p.1).fold(f64::MAX, f64::min),
            tri.iter().map(|p| p.1).fold(f64::MIN, f64::max),
        );
        let edge = |a: (f64, f64), b: (f64, f64), p: (f64, f64)| {
            (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0)
        };
        for py in y0.floor() as i64..=y1.ceil() as i64 {
            for px in x0.floor() as i64..=x1.ceil() as i64 {
                let p = (px as f64 + 0.5, py as f64 + 0.5);
                let e = [
                    edge(tri[0], tri[1], p),
                    edge(tri[1], tri[2], p),
                    edge(tri[2], tri[0], p),
                ];
                if e.iter().all(|&v| v >= 0.0) || e.iter().all(|&v| v <= 0.0) {
                    self.blend(px, py, colour, 1.0);
                }
            }
        }
    }

    /// The image as a PNG file (8-bit RGB).
    pub fn to_png(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(self.height * (1 + 3 * self.width));
        for row in self.pixels.chunks(self.width.max(1)) {
            raw.push(0); // filter type: none
            for p in row {
                raw.extend_from_slice(p);
            }
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        // Writing to a Vec cannot fail.
        let idat = z
            .write_all(&raw)
            .and_then(|_| z.finish())
            .unwrap_or_default();
        let mut ihdr = Vec::with_capacity(13);
        ihdr.extend_from_slice(&(self.width as u32).to_be_bytes());
        ihdr.extend_from_slice(&(self.height as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // depth 8, RGB, deflate, no filter, no interlace
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [
            (b"IHDR", &ihdr[..]),
            (b"IDAT", &idat[..]),
            (b"IEND", &[][..]),
        ] {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let crc = crc32(&out[start..]);
            out.extend_from_slice(&crc.to_be_bytes());
        }
        out
    }
}

/// CRC-32 (IEEE, reflected, as PNG chunks use), bit by bit: the images are small.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn crc32_check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    /// Decodes our own PNG back (chunk CRCs, IHDR, zlib, filter bytes) and finds the drawing.
    #[test]
    fn png_round_trip() {
        let mut c = Canvas::new(40, 20, [255, 255, 255]);
        c.fill_rect(2.0, 2.0, 10.0, 6.0, [10, 20, 30]);
        c.line(20.0, 10.0, 38.0, 10.0, 3.0, [200, 0, 0], 1.0);
        let png = c.to_png();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let mut i = 8;
        let mut idat = Vec::new();
        let mut kinds = Vec::new();
        while i < png.len() {
            let len = u32::from_be_bytes(png[i..i + 4].try_into().unwrap()) as usize;
            let body = &png[i + 4..i + 8 + len];
            let crc = u32::from_be_bytes(png[i + 8 + len..i + 12 + len].try_into().unwrap());
            assert_eq!(crc32(body), crc, "chunk CRC");
            kinds.push(String::from_utf8(body[..4].to_vec()).unwrap());
            if &body[..4] == b"IHDR" {
                assert_eq!(&body[4..12], &[0, 0, 0, 40, 0, 0, 0, 20]);
            }
            if &body[..4] == b"IDAT" {
                idat.extend_from_slice(&body[4..]);
            }
            i += 12 + len;
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&idat[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), 20 * (1 + 40 * 3));
        let px = |x: usize, y: usize| {
            let o = y * 121 + 1 + 3 * x;
            [raw[o], raw[o + 1], raw[o + 2]]
        };
        assert!((0..20).all(|y| raw[y * 121] == 0), "filter bytes");
        assert_eq!(px(5, 5), [10, 20, 30]);
        assert_eq!(px(0, 0), [255, 255, 255]);
        assert_eq!(px(30, 10), [200, 0, 0]);
        assert_eq!(px(30, 14), [255, 255, 255]);
        assert_eq!(c.get(30, 10), Some([200, 0, 0]));
    }

    /// Text is inked where the font puts it: "g" and "9" differ (the bitmap font drew them
    /// alike), the ink is centred, and widths come from the font's advances.
    #[test]
    fn text_uses_the_font() {
        let ink = |t: &str| {
            let mut c = Canvas::new(40, 24, [255, 255, 255]);
            c.text_centred(20.0, 4.0, t, [0, 0, 0]);
            c.pixels.iter().map(|p| p[0] < 128).collect::<Vec<bool>>()
        };
        let (g, nine) = (ink("g"), ink("9"));
        assert!(g.iter().any(|&x| x) && nine.iter().any(|&x| x));
        let differ = g.iter().zip(&nine).filter(|(a, b)| a != b).count();
        assert!(differ > 10, "g and 9 differ in {differ} pixels");
        // "g" descends below the baseline, "9" does not.
        let lowest = |v: &[bool]| {
            (0..24)
                .rev()
                .find(|&y| (0..40).any(|x| v[y * 40 + x]))
                .unwrap()
        };
        assert!(
            lowest(&g) > lowest(&nine),
            "{} {}",
            lowest(&g),
            lowest(&nine)
        );
        let cols: Vec<usize> = (0..40)
            .filter(|&x| (0..24).any(|y| ink("H")[y * 40 + x]))
            .collect();
        let mid = (cols[0] + cols[cols.len() - 1]) as f64 / 2.0;
        assert!((mid - 19.5).abs() <= 1.0, "centred: {cols:?}");
        assert!(text_width("WWW") > text_width("iii"));
        let c = Canvas::new(1, 1, [0, 0, 0]);
        let cut = c.fit("a long cluster name that does not fit", 60.0);
        assert!(cut.ends_with('…') && text_width(&cut) <= 60.0, "{cut}");
        assert_eq!(c.fit("short", 60.0), "short");
    }

    #[test]
    fn arrowheads_point_at_the_target() {
        let mut c = Canvas::new(40, 40, [255, 255, 255]);
        c.arrowhead((20.0, 39.0), (20.0, 5.0), 10.0, [0, 0, 255]);
        // Tip at y = 5, base at y = 15, widest at the base.
        let width = |y: usize| {
            (0..40)
                .filter(|&x| c.get(x, y) == Some([0, 0, 255]))
                .count()
        };
        assert!(width(6) < width(13), "{} {}", width(6), width(13));
        assert_eq!(width(3), 0);
        assert_eq!(width(17), 0);
    }
}
