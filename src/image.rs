//! Canvas pictures: indexed PNGs (one palette entry per colour, 4 bits a
//! pixel), shared by the server's exports and the client's
//! `pixchat canvas --png`.

use std::io::Write;

use crate::protocol::PALETTE;

/// The palette as PNG wants it: r, g, b per colour.
pub fn palette_rgb() -> Vec<u8> {
    PALETTE.iter().flat_map(|c| c.rgb).collect()
}

/// Scales palette indexes (row by row, `width` a row) by `scale` in both
/// directions.
pub fn scaled(pixels: &[u8], width: u16, height: u16, scale: u32) -> Vec<u8> {
    let (w, h, s) = (
        usize::from(width),
        usize::from(height),
        scale.max(1) as usize,
    );
    let mut out = Vec::with_capacity(w * h * s * s);
    for row in pixels.chunks(w).take(h) {
        let start = out.len();
        for &p in row {
            out.extend(std::iter::repeat_n(p, s));
        }
        for _ in 1..s {
            out.extend_from_within(start..start + w * s);
        }
    }
    out
}

/// Writes palette indexes (row by row) as an indexed PNG, `scale` times
/// larger in each direction.
pub fn write_png(
    out: impl Write,
    pixels: &[u8],
    width: u16,
    height: u16,
    scale: u32,
) -> Result<(), png::EncodingError> {
    let s = scale.max(1);
    let (w, h) = (u32::from(width) * s, u32::from(height) * s);
    let mut enc = png::Encoder::new(out, w, h);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(palette_rgb());
    let mut writer = enc.write_header()?;
    writer.write_image_data(&scaled(pixels, width, height, s))?;
    writer.finish()
}

/// Reads an indexed PNG written by [`write_png`] back into palette
/// indexes: width, height and the pixels. For tests and tools.
pub fn read_png(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), png::DecodingError> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut buf)?;
    buf.truncate(info.buffer_size());
    Ok((info.width, info.height, buf))
}
