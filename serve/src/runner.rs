//! A model as the server runs it: one interpreter, or the segments of a model that the Edge TPU
//! compiler split for several devices (`NAME_segment_K_of_N_edgetpu.tflite`, served under
//! `NAME_edgetpu.tflite`). Segments run in turn; each segment's inputs are the outputs of the
//! same name of an earlier segment, checked when the model is loaded. The scheduler places each
//! segment's executable like any other model; with several devices, the requests of different
//! connections run on different devices at the same time.

use crate::frigate::Shared;
use edgetpu::{Interpreter, Model, TensorInfo};
use std::sync::Arc;

/// One model, maybe in segments, ready to run.
pub struct Runner {
    stages: Vec<Interpreter>,
    /// For each stage after the first, for each of its inputs: the (earlier stage, output) that
    /// feeds it.
    links: Vec<Vec<(usize, usize)>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("segments", &self.stages.len()).finish()
    }
}

impl Runner {
    /// Builds the interpreters of `models` (one model, or its segments in order) on the server's
    /// devices or its CPU, and links the segments by tensor name.
    pub fn new(shared: &Shared, name: &str, models: &[Arc<Model>]) -> Result<Runner, String> {
        if models.is_empty() {
            return Err(format!("model {name}: no model file"));
        }
        let stages = models.iter().map(|m| shared.interpreter(name, m.clone())).collect::<Result<Vec<_>, String>>()?;
        let mut links = Vec::new();
        for k in 1..stages.len() {
            let mut stage = Vec::new();
            for input in stages[k].inputs() {
                let from = (0..k)
                    .rev()
                    .find_map(|s| stages[s].outputs().iter().position(|o| o.name == input.name).map(|j| (s, j)));
                let (s, j) = from.ok_or_else(|| {
                    format!(
                        "model {name}: segment {k} takes input {:?}, which no earlier segment outputs; \
                         were the segments compiled together?",
                        input.name
                    )
                })?;
                let out = stages[s].outputs()[j];
                if out.dtype != input.dtype || out.checked_byte_len() != input.checked_byte_len() {
                    return Err(format!(
                        "model {name}: segment {k} input {:?} is {:?} {}, segment {s} outputs it as {:?} {}",
                        input.name,
                        input.shape,
                        input.dtype.name(),
                        out.shape,
                        out.dtype.name()
                    ));
                }
                stage.push((s, j));
            }
            links.push(stage);
        }
        Ok(Runner { stages, links })
    }

    /// How many segments (1 for a whole model).
    pub fn segments(&self) -> usize {
        self.stages.len()
    }

    /// Whether any segment has an operator named `op`.
    pub fn has_op(&self, op: &str) -> bool {
        self.stages.iter().any(|it| {
            let m = it.model();
            m.subgraphs().first().is_some_and(|sg| sg.operators.iter().any(|o| m.op_name(o) == op))
        })
    }

    fn first(&self) -> &Interpreter {
        &self.stages[0]
    }

    fn last(&self) -> &Interpreter {
        &self.stages[self.stages.len() - 1]
    }

    /// The first segment's inputs.
    pub fn inputs(&self) -> Vec<&TensorInfo> {
        self.first().inputs()
    }

    /// The last segment's outputs.
    pub fn outputs(&self) -> Vec<&TensorInfo> {
        self.last().outputs()
    }

    /// Input `i` of the first segment, to fill in place.
    pub fn input_mut(&mut self, i: usize) -> edgetpu::Result<&mut [u8]> {
        self.stages[0].input_mut(i)
    }

    /// Copies `bytes` into input `i` of the first segment.
    pub fn set_input(&mut self, i: usize, bytes: &[u8]) -> edgetpu::Result<()> {
        self.stages[0].set_input(i, bytes)
    }

    /// Runs the segments in turn.
    pub fn invoke(&mut self) -> edgetpu::Result<()> {
        self.stages[0].invoke()?;
        for k in 1..self.stages.len() {
            let (done, rest) = self.stages.split_at_mut(k);
            let it = &mut rest[0];
            for (i, &(s, j)) in self.links[k - 1].iter().enumerate() {
                it.set_input(i, done[s].output(j)?)?;
            }
            it.invoke()?;
        }
        Ok(())
    }

    /// Output `j` of the last segment.
    pub fn output(&self, j: usize) -> edgetpu::Result<&[u8]> {
        self.last().output(j)
    }
}
