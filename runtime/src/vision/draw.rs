//! Drawing results onto RGB images: box outlines, lines, and text in a built-in 3x5 pixel font
//! (upper case letters, digits and common punctuation; other characters are drawn as `?`), with
//! [`detections`] and [`pose`] to draw a whole result.
//!
//! ```no_run
//! # fn f(image: &edgetpu::vision::image::DynamicImage, found: &[edgetpu::vision::Detection]) {
//! use edgetpu::vision::draw;
//!
//! let mut canvas = image.to_rgb8();
//! draw::detections(&mut canvas, found);
//! canvas.save("boxes.png").unwrap();
//! # }
//! ```

use super::{Detection, Pose};
use image::{Rgb, RgbImage};

/// Distinct colours for classes (cycled by class id).
pub const COLOURS: [[u8; 3]; 10] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 190],
];

/// The colour of class `id`.
pub fn colour(id: usize) -> Rgb<u8> {
    Rgb(COLOURS[id % COLOURS.len()])
}

/// Fills the rectangle `x0..x1, y0..y1` (clipped to the image).
pub fn fill(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    for y in y0.max(0)..y1.min(h) {
        for x in x0.max(0)..x1.min(w) {
            img.put_pixel(x as u32, y as u32, c);
        }
    }
}

/// Draws the outline of the box `x0..x1, y0..y1`, `thickness` pixels wide, inside the box.
pub fn outline(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, thickness: i64, c: Rgb<u8>) {
    let t = thickness.max(1);
    fill(img, x0, y0, x1, (y0 + t).min(y1), c);
    fill(img, x0, (y1 - t).max(y0), x1, y1, c);
    fill(img, x0, y0, (x0 + t).min(x1), y1, c);
    fill(img, (x1 - t).max(x0), y0, x1, y1, c);
}

/// Rows of a glyph, 3 bits each (bit 2 is the left column).
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_uppercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 2, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [3, 4, 4, 4, 3],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [3, 4, 5, 5, 3],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 2],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [2, 5, 5, 5, 2],
        'P' => [6, 5, 6, 4, 4],
        'Q' => [2, 5, 5, 6, 3],
        'R' => [6, 5, 6, 5, 5],
        'S' => [3, 4, 2, 1, 6],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        ' ' => [0, 0, 0, 0, 0],
        '.' => [0, 0, 0, 0, 2],
        ',' => [0, 0, 0, 2, 4],
        ':' => [0, 2, 0, 2, 0],
        ';' => [0, 2, 0, 2, 4],
        '-' => [0, 0, 7, 0, 0],
        '_' => [0, 0, 0, 0, 7],
        '+' => [0, 2, 7, 2, 0],
        '=' => [0, 7, 0, 7, 0],
        '%' => [5, 1, 2, 4, 5],
        '(' => [1, 2, 2, 2, 1],
        ')' => [4, 2, 2, 2, 4],
        '/' => [1, 1, 2, 4, 4],
        '\'' => [2, 2, 0, 0, 0],
        '"' => [5, 5, 0, 0, 0],
        '!' => [2, 2, 2, 0, 2],
        '#' => [5, 7, 5, 7, 5],
        '&' => [2, 5, 2, 5, 3],
        _ => [7, 1, 2, 0, 2],
    }
}

/// Width in pixels of `text` drawn at `scale` (4 columns per character, the last one blank).
pub fn text_width(text: &str, scale: i64) -> i64 {
    text.chars().count() as i64 * 4 * scale
}

/// Height in pixels of a line of text at `scale`.
pub fn text_height(scale: i64) -> i64 {
    5 * scale
}

/// Draws `text` with its top-left corner at (x, y), each font pixel `scale` x `scale`.
pub fn text(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: i64, c: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let gx = x + i as i64 * 4 * scale;
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    let (px, py) = (gx + col * scale, y + row as i64 * scale);
                    fill(img, px, py, px + scale, py + scale, c);
                }
            }
        }
    }
}

/// Draws `label` on a filled background of colour `bg` (text black or white, whichever
/// contrasts) just above (x, y), or just below it when there is no room above.
pub fn label(img: &mut RgbImage, x: i64, y: i64, label: &str, scale: i64, bg: Rgb<u8>) {
    let (w, h) = (text_width(label, scale) + scale, text_height(scale) + 2 * scale);
    let top = if y - h >= 0 { y - h } else { y };
    fill(img, x, top, x + w, top + h, bg);
    let luma = 299 * bg.0[0] as u32 + 587 * bg.0[1] as u32 + 114 * bg.0[2] as u32;
    let fg = if luma > 128_000 { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) };
    text(img, x + scale, top + scale, label, scale, fg);
}

/// A line from (x0, y0) to (x1, y1), `thickness` pixels wide (clipped to the image).
pub fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), thickness: i64, c: Rgb<u8>) {
    let t = thickness.max(1);
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
    for s in 0..=steps {
        let x = x0 + (x1 - x0) * s / steps - t / 2;
        let y = y0 + (y1 - y0) * s / steps - t / 2;
        fill(img, x, y, x + t, y + t, c);
    }
}

/// A line and text scale that reads well on an image of this size: 1 up to 480 pixels on the
/// short side, then 1 more per 240 pixels, at most 4.
pub fn scale_for(img: &RgbImage) -> i64 {
    (img.width().min(img.height()) as i64 / 240).clamp(1, 4)
}

/// The name a detection is drawn and printed with: its label, else `class N`.
pub fn detection_name(d: &Detection) -> String {
    d.label.clone().unwrap_or_else(|| format!("class {}", d.id))
}

/// Draws each detection's box in its class colour and, above it, its name and score in per cent.
pub fn detections(img: &mut RgbImage, found: &[Detection]) {
    let scale = scale_for(img);
    for d in found {
        let b = &d.bbox;
        let (x0, y0) = (b.xmin.floor() as i64, b.ymin.floor() as i64);
        let (x1, y1) = (b.xmax.ceil() as i64, b.ymax.ceil() as i64);
        outline(img, x0, y0, x1, y1, scale, colour(d.id));
    }
    // Labels after all boxes, so that no box is drawn over a label.
    for d in found {
        let text = format!("{} {:.0}%", detection_name(d), d.score * 100.0);
        label(img, d.bbox.xmin as i64, d.bbox.ymin as i64, &text, scale, colour(d.id));
    }
}

/// The bones of the COCO skeleton, as pairs of indices into [`KEYPOINT_NAMES`](super::KEYPOINT_NAMES).
pub const SKELETON: [(usize, usize); 16] = [
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (5, 6),
    (5, 7),
    (7, 9),
    (6, 8),
    (8, 10),
    (5, 11),
    (6, 12),
    (11, 12),
    (11, 13),
    (13, 15),
    (12, 14),
    (14, 16),
];

/// Draws a pose: the bones whose two keypoints score at least `min_score`, then those keypoints
/// as squares (left side in one colour, right side and the face in others).
pub fn pose(img: &mut RgbImage, pose: &Pose, min_score: f32) {
    let scale = scale_for(img);
    let kp = &pose.keypoints;
    let at = |i: usize| kp.get(i).filter(|k| k.score >= min_score).map(|k| (k.x as i64, k.y as i64));
    for &(a, b) in &SKELETON {
        if let (Some(pa), Some(pb)) = (at(a), at(b)) {
            line(img, pa, pb, scale, Rgb([255, 255, 255]));
        }
    }
    for (i, _) in kp.iter().enumerate() {
        if let Some((x, y)) = at(i) {
            // Odd indices past the face are left-side joints, even ones right-side.
            let c = if i < 5 {
                colour(2)
            } else if i % 2 == 1 {
                colour(0)
            } else {
                colour(3)
            };
            let r = 2 * scale;
            fill(img, x - r, y - r, x + r + 1, y + r + 1, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_inside_the_image_only() {
        let mut img = RgbImage::new(10, 8);
        outline(&mut img, -5, 2, 6, 20, 1, Rgb([255, 0, 0]));
        assert_eq!(img.get_pixel(0, 2).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(5, 5).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(3, 5).0, [0, 0, 0]);
        let mut img = RgbImage::new(12, 5);
        text(&mut img, 0, 0, "1", 1, Rgb([9, 9, 9]));
        let lit: Vec<(u32, u32)> =
            (0..5).flat_map(|y| (0..3).map(move |x| (x, y))).filter(|&(x, y)| img.get_pixel(x, y).0[0] == 9).collect();
        assert_eq!(lit, vec![(1, 0), (0, 1), (1, 1), (1, 2), (1, 3), (0, 4), (1, 4), (2, 4)]);
        label(&mut img, 0, 0, "AB", 1, Rgb([255, 255, 255]));
        assert_eq!(text_width("AB", 2), 16);
    }

    #[test]
    fn draws_detections_and_poses() {
        use crate::vision::{BBox, Keypoint, KEYPOINT_NAMES};
        let mut img = RgbImage::new(100, 80);
        let d = Detection {
            id: 1,
            label: None,
            score: 0.5,
            bbox: BBox { xmin: 10.0, ymin: 20.0, xmax: 50.0, ymax: 60.0 },
            normalized: [0.0; 4],
        };
        assert_eq!(detection_name(&d), "class 1");
        detections(&mut img, std::slice::from_ref(&d));
        assert_eq!(img.get_pixel(10, 40).0, COLOURS[1]);
        assert_eq!(img.get_pixel(49, 40).0, COLOURS[1]);
        assert_eq!(img.get_pixel(30, 40).0, [0, 0, 0]);
        // The label sits above the box, on the class colour.
        assert_eq!(img.get_pixel(10, 13).0, COLOURS[1]);

        let mut img = RgbImage::new(100, 100);
        let keypoints = KEYPOINT_NAMES
            .iter()
            .enumerate()
            .map(|(i, &name)| Keypoint { name, x: 50.0, y: 5.0 * i as f32, score: if i == 16 { 0.1 } else { 0.9 } })
            .collect();
        pose(&mut img, &Pose { score: 0.9, keypoints }, 0.5);
        assert_eq!(img.get_pixel(50, 0).0, COLOURS[2], "nose");
        assert_eq!(img.get_pixel(50, 25).0, COLOURS[0], "left shoulder");
        assert_eq!(img.get_pixel(50, 30).0, COLOURS[3], "right shoulder");
        assert_eq!(img.get_pixel(50, 80).0, [0, 0, 0], "ankle below the threshold");
        let mut img = RgbImage::new(5, 5);
        line(&mut img, (0, 0), (4, 4), 1, Rgb([1, 2, 3]));
        assert!((0..5).all(|i| img.get_pixel(i, i).0 == [1, 2, 3]));
        assert_eq!(img.get_pixel(4, 0).0, [0, 0, 0]);
    }
}
