//! A minimal RGB canvas and PNG encoder, so `adag plot` writes a PNG without Graphviz.
//!
//! The cluster graph needs filled boxes, outlined boxes, thick semi-transparent lines and
//! short ASCII labels; nothing more. Lines are covered by distance to the segment (a cheap
//! anti-alias); text uses the 5×7 bitmap font in [`crate::font`], one pixel per dot, six pixels
//! per character. The PNG is 8-bit RGB, unfiltered scanlines in one zlib stream (flate2).

use std::io::Write;

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

    /// Writes `text` centred on `cx` with its top at `top`; characters outside printable
    /// ASCII are drawn as `?`.
    pub fn text_centred(&mut self, cx: f64, top: f64, text: &str, colour: Rgb) {
        let n = text.chars().count() as f64;
        let width = n * crate::font::ADVANCE as f64 - 1.0;
        let x0 = (cx - width / 2.0).round() as i64;
        let y0 = top.round() as i64;
        for (i, ch) in text.chars().enumerate() {
            let rows = crate::font::glyph(ch);
            let gx = x0 + (i * crate::font::ADVANCE) as i64;
            for (r, bits) in rows.iter().enumerate() {
                for c in 0..5 {
                    if bits & (0x10 >> c) != 0 {
                        self.blend(gx + c, y0 + r as i64, colour, 1.0);
                    }
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
        c.text_centred(10.0, 11.0, "A", [0, 0, 0]);
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
        // 'A' is 5 wide centred on x = 10 (columns 8..13), its top row is .###.
        assert_eq!(px(8, 11), [255, 255, 255]);
        assert_eq!(px(9, 11), [0, 0, 0]);
        assert_eq!(c.get(9, 11), Some([0, 0, 0]));
    }
}
