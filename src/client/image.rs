//! Template images read from PNG files: the file reading and decoding the
//! state leaves to its callers (the state does no I/O). Any PNG the `png`
//! crate reads (grey, RGB, palette, with or without alpha, 8 or 16 bits)
//! becomes rows of sRGB pixels, a transparent one as `None`.

use std::io::{BufReader, Cursor};
use std::path::Path;

use crate::protocol::MAX_SIDE;

/// A decoded template image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// What to call it: the file name.
    pub name: String,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Row by row; `None` where the image is transparent (alpha under
    /// half), which the template leaves to others.
    pub pixels: Vec<Option<[u8; 3]>>,
}

/// Reads the PNG file at `path`.
pub fn load(path: &Path) -> Result<Image, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    decode(&name, &bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Decodes PNG `bytes`.
pub fn decode(name: &str, bytes: &[u8]) -> Result<Image, String> {
    let mut decoder = png::Decoder::new(BufReader::new(Cursor::new(bytes)));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("not a PNG image the client can read: {e}"))?;
    let (w, h) = (reader.info().width, reader.info().height);
    if w == 0 || h == 0 || w > u32::from(MAX_SIDE) || h > u32::from(MAX_SIDE) {
        return Err(format!(
            "the image is {w}x{h}: a template is 1-{MAX_SIDE} pixels a side"
        ));
    }
    let size = reader
        .output_buffer_size()
        .ok_or("the image is too large to decode")?;
    let mut buf = vec![0; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("a damaged PNG image: {e}"))?;
    let (color, _) = reader.output_color_type();
    let channels = color.samples();
    let pixels = buf[..frame.buffer_size()]
        .chunks(frame.line_size)
        .take(h as usize)
        .flat_map(|row| row.chunks(channels).take(w as usize))
        .map(|p| match p {
            [v] => Some([*v; 3]),
            [v, a] => (*a >= 128).then_some([*v; 3]),
            [r, g, b] => Some([*r, *g, *b]),
            [r, g, b, a, ..] => (*a >= 128).then_some([*r, *g, *b]),
            [] => None,
        })
        .collect();
    Ok(Image {
        name: name.to_string(),
        width: w as u16,
        height: h as u16,
        pixels,
    })
}

/// Encodes `pixels` (RGBA, row by row) as a PNG, for tests and examples.
pub fn encode_rgba(width: u32, height: u32, pixels: &[[u8; 4]]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("write to memory");
    let data: Vec<u8> = pixels.iter().flatten().copied().collect();
    writer.write_image_data(&data).expect("write to memory");
    writer.finish().expect("write to memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgba_pixels_come_back_and_transparent_ones_are_none() {
        let png = encode_rgba(
            2,
            2,
            &[
                [255, 0, 0, 255],
                [0, 0, 0, 0],
                [1, 2, 3, 200],
                [9, 9, 9, 100],
            ],
        );
        let image = decode("t.png", &png).unwrap();
        assert_eq!((image.width, image.height), (2, 2));
        assert_eq!(
            image.pixels,
            [Some([255, 0, 0]), None, Some([1, 2, 3]), None]
        );
    }

    #[test]
    fn what_is_not_a_png_says_so() {
        let err = decode("x.png", b"GIF89a....").unwrap_err();
        assert!(err.contains("not a PNG"), "{err}");
    }
}
