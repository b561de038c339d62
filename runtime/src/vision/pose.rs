//! Pose estimation: MoveNet single-pose and PoseNet (with Coral's `PosenetDecoderOp`) outputs as
//! keypoints in the original image.

use super::{dequantize, output, Transform};
use crate::cpu::{Interpreter, TensorInfo};
use crate::error::{Error, Result};
use serde::Serialize;

/// The 17 COCO keypoints, in the models' order.
pub const KEYPOINT_NAMES: [&str; 17] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];

/// One keypoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Keypoint {
    /// Its name (see [`KEYPOINT_NAMES`]).
    pub name: &'static str,
    /// Column in pixels of the original image (clamped to it).
    pub x: f32,
    /// Row in pixels of the original image (clamped to it).
    pub y: f32,
    /// Confidence, 0..1.
    pub score: f32,
}

/// One person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pose {
    /// Pose confidence (MoveNet: the mean keypoint score).
    pub score: f32,
    /// The 17 keypoints.
    pub keypoints: Vec<Keypoint>,
}

/// The poses found by a MoveNet single-pose model (one output `[1, 1, 17, 3]`) or a PoseNet model
/// with the decoder op (four outputs: keypoints, keypoint scores, pose scores, count), keeping
/// poses scoring at least `threshold`.
pub fn pose(it: &Interpreter, transform: &Transform, threshold: f32) -> Result<Vec<Pose>> {
    let outputs = it.outputs();
    let first = outputs.first().ok_or_else(|| Error::argument("the model has no outputs"))?;
    let poses = if outputs.len() >= 4 && first.shape.ends_with(&[17, 2]) {
        posenet_poses([output(it, 0)?, output(it, 1)?, output(it, 2)?, output(it, 3)?], transform)?
    } else {
        movenet_poses(output(it, 0)?, transform)?
    };
    Ok(poses.into_iter().filter(|p| p.score >= threshold).collect())
}

/// MoveNet single pose: `[1, 1, 17, 3]` of (y, x, score), y and x normalised to the input.
pub fn movenet_poses(out: (&TensorInfo, &[u8]), transform: &Transform) -> Result<Vec<Pose>> {
    let (info, bytes) = out;
    if info.num_elements() != 17 * 3 || info.shape.last() != Some(&3) {
        return Err(Error::argument(format!(
            "output {} ({:?}) has shape {:?}; MoveNet single-pose gives [1, 1, 17, 3]",
            info.index, info.name, info.shape
        )));
    }
    let v = dequantize(info, bytes)?;
    let keypoints: Vec<Keypoint> = v
        .chunks_exact(3)
        .zip(KEYPOINT_NAMES)
        .map(|(k, name)| {
            let (x, y) = transform.normalized_to_image(k[1] as f64, k[0] as f64);
            Keypoint { name, x: x as f32, y: y as f32, score: k[2] }
        })
        .collect();
    let score = keypoints.iter().map(|k| k.score).sum::<f32>() / 17.0;
    Ok(vec![Pose { score, keypoints }])
}

/// PoseNet decoder outputs: keypoints `[1, N, 17, 2]` (y, x in input pixels), keypoint scores
/// `[1, N, 17]`, pose scores `[1, N]` and the pose count `[1]`.
pub fn posenet_poses(outs: [(&TensorInfo, &[u8]); 4], transform: &Transform) -> Result<Vec<Pose>> {
    let [points, kscores, pscores, count] = outs.map(|(i, b)| dequantize(i, b));
    let (points, kscores, pscores, count) = (points?, kscores?, pscores?, count?);
    let n = pscores.len();
    if points.len() != n * 34 || kscores.len() != n * 17 || count.len() != 1 {
        let s: Vec<String> = outs.iter().map(|(i, _)| format!("{:?}", i.shape)).collect();
        return Err(Error::argument(format!(
            "PoseNet outputs have shapes {}; expected [1, N, 17, 2], [1, N, 17], [1, N], [1]",
            s.join(", ")
        )));
    }
    let valid = if count[0].is_finite() { (count[0].max(0.0) as usize).min(n) } else { 0 };
    let (w, h) = (transform.image_width as f64, transform.image_height as f64);
    Ok((0..valid)
        .map(|p| Pose {
            score: pscores[p],
            keypoints: (0..17)
                .map(|k| {
                    let (y, x) = (points[(p * 17 + k) * 2] as f64, points[(p * 17 + k) * 2 + 1] as f64);
                    let (ix, iy) = transform.to_image(x, y);
                    Keypoint {
                        name: KEYPOINT_NAMES[k],
                        x: ix.clamp(0.0, w) as f32,
                        y: iy.clamp(0.0, h) as f32,
                        score: kscores[p * 17 + k],
                    }
                })
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TensorType;
    use crate::vision::tests::info;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn movenet_keypoints_in_image_pixels() {
        let t = Transform { image_width: 500, image_height: 610, ..Transform::identity(192, 192) };
        let t = Transform { scale_x: 192.0 / 500.0, scale_y: 192.0 / 610.0, ..t };
        let mut v = vec![0.0f32; 51];
        v[0..3].copy_from_slice(&[0.5, 0.25, 0.9]); // nose
        v[48..51].copy_from_slice(&[1.0, 1.0, 0.1]); // right ankle
        let p = movenet_poses((&info(&[1, 1, 17, 3], TensorType::FLOAT32, None), &f32s(&v)), &t).unwrap();
        assert_eq!(p.len(), 1);
        let nose = &p[0].keypoints[0];
        assert_eq!((nose.name, nose.x, nose.y, nose.score), ("nose", 125.0, 305.0, 0.9));
        let ankle = &p[0].keypoints[16];
        assert_eq!((ankle.name, ankle.x, ankle.y), ("right_ankle", 500.0, 610.0));
        assert!((p[0].score - 1.0 / 17.0).abs() < 1e-6);
        assert!(movenet_poses((&info(&[1, 17, 2], TensorType::FLOAT32, None), &[0; 136]), &t).is_err());
    }

    #[test]
    fn posenet_poses_honour_the_count() {
        let t = Transform { scale_x: 0.5, scale_y: 0.5, ..Transform::identity(100, 100) };
        let t = Transform { image_width: 200, image_height: 200, ..t };
        let mut pts = vec![0.0f32; 2 * 17 * 2];
        pts[0] = 10.0; // pose 0, nose y
        pts[1] = 20.0; // pose 0, nose x
        let ks = vec![0.5f32; 2 * 17];
        let (pi, ki, si, ci) = (
            info(&[1, 2, 17, 2], TensorType::FLOAT32, None),
            info(&[1, 2, 17], TensorType::FLOAT32, None),
            info(&[1, 2], TensorType::FLOAT32, None),
            info(&[1], TensorType::FLOAT32, None),
        );
        let (pb, kb, sb, cb) = (f32s(&pts), f32s(&ks), f32s(&[0.8, 0.3]), f32s(&[1.0]));
        let p = posenet_poses([(&pi, &pb), (&ki, &kb), (&si, &sb), (&ci, &cb)], &t).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].score, 0.8);
        assert_eq!((p[0].keypoints[0].x, p[0].keypoints[0].y), (40.0, 20.0));
        assert!(posenet_poses([(&ki, &kb), (&pi, &pb), (&si, &sb), (&ci, &cb)], &t).is_err());
    }
}
