//! Classification: the top-k classes of a score vector.

use super::{dequantize, output, raw_values, Labels};
use crate::cpu::{Interpreter, TensorInfo};
use crate::error::{Error, Result};
use serde::Serialize;

/// One class of a classification result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Class {
    /// Class index in the score vector.
    pub id: usize,
    /// Its label, when labels are known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Score (dequantized for quantized outputs).
    pub score: f32,
    /// The raw quantized value, for quantized outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantized: Option<i64>,
}

/// Options of [`classify`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyOptions {
    /// Classes to return at most.
    pub top_k: usize,
    /// Only classes scoring at least this much.
    pub threshold: f32,
    /// Model output holding the scores.
    pub output: usize,
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions { top_k: 5, threshold: f32::NEG_INFINITY, output: 0 }
    }
}

/// The best classes of output `options.output`, best first (ties: lower class id first).
pub fn classify(it: &Interpreter, options: &ClassifyOptions, labels: Option<&Labels>) -> Result<Vec<Class>> {
    let (info, bytes) = output(it, options.output)?;
    classify_scores(info, bytes, options, labels)
}

/// [`classify`] on a tensor's bytes: `[N]`, `[1, N]` or any shape whose leading dimensions are 1.
pub fn classify_scores(
    info: &TensorInfo,
    bytes: &[u8],
    options: &ClassifyOptions,
    labels: Option<&Labels>,
) -> Result<Vec<Class>> {
    let n = info.shape.last().copied().unwrap_or(1);
    if info.num_elements() != n {
        return Err(Error::argument(format!(
            "output {} ({:?}) has shape {:?}; a classifier's scores are [1, classes]",
            info.index, info.name, info.shape
        )));
    }
    let scores = dequantize(info, bytes)?;
    let quantized = info.quant.is_some() && info.dtype != crate::model::TensorType::FLOAT32;
    let raw = if quantized { Some(raw_values(info, bytes)?) } else { None };
    let mut order: Vec<usize> = (0..scores.len()).filter(|&i| scores[i] >= options.threshold).collect();
    // NaN scores fail the threshold test above. Stable sort: equal scores keep class order.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order.truncate(options.top_k);
    Ok(order
        .into_iter()
        .map(|id| Class {
            id,
            label: labels.and_then(|l| l.get(id)).map(str::to_string),
            score: scores[id],
            quantized: raw.as_ref().map(|r| r[id] as i64),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TensorType;
    use crate::vision::tests::info;

    #[test]
    fn top_k_with_labels_and_threshold() {
        let t = info(&[1, 5], TensorType::UINT8, Some((1.0 / 256.0, 0)));
        let labels = Labels::parse("a\nb\nc\nd\ne\n");
        let bytes = [10u8, 72, 63, 72, 0];
        let opts = ClassifyOptions { top_k: 3, ..ClassifyOptions::default() };
        let got = classify_scores(&t, &bytes, &opts, Some(&labels)).unwrap();
        let ids: Vec<usize> = got.iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        assert_eq!(got[0].label.as_deref(), Some("b"));
        assert_eq!(got[0].score, 0.28125);
        assert_eq!(got[0].quantized, Some(72));
        let opts = ClassifyOptions { top_k: 10, threshold: 0.25, output: 0 };
        let got = classify_scores(&t, &bytes, &opts, None).unwrap();
        assert_eq!(got.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1, 3]);
        assert!(got[0].label.is_none());
        let json = serde_json::to_string(&got[0]).unwrap();
        assert_eq!(json, r#"{"id":1,"score":0.28125,"quantized":72}"#);

        let f = info(&[3], TensorType::FLOAT32, None);
        let bytes: Vec<u8> = [0.1f32, 0.7, 0.2].iter().flat_map(|v| v.to_le_bytes()).collect();
        let got = classify_scores(&f, &bytes, &ClassifyOptions::default(), None).unwrap();
        assert_eq!(got.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert_eq!(got[0].quantized, None);

        assert!(classify_scores(&info(&[2, 3], TensorType::UINT8, None), &[0; 6], &opts, None).is_err());
    }
}
