//! The native part of the `edgetpu` Python package (`edgetpu._native`): the interpreter, the
//! Edge TPU delegate and device listing, over the `edgetpu` crate. The Python modules in
//! `python/edgetpu/` put the tflite_runtime / ai_edge_litert and pycoral APIs on top of it.
//!
//! Tensors cross the boundary as NumPy arrays: `set_tensor` copies one in (checking dtype and
//! shape), `get_tensor` copies one out, and `view` hands out an array over the interpreter's own
//! memory, as TFLite's `tensor()` does.

use edgetpu::model::{Signature, EDGETPU_CUSTOM_OP};
use edgetpu::{DeviceSpec, ErrorKind, Interpreter, Model, Runtime, RuntimeOptions};
use numpy::ndarray::{ArrayViewMut, IxDyn};
use numpy::{
    Element, PyArray, PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The message TFLite gives when arrays from `tensor()` are alive at `invoke()`.
const VIEWS_ALIVE: &str = "There is at least 1 reference to internal data\n      in the interpreter in the form of a \
                           numpy array or slice. Be sure to\n      only hold the function returned from tensor() if \
                           you are using raw data access.";

/// An error of the runtime as a Python exception: invalid arguments and models are ValueErrors,
/// the rest (devices, unsupported ops) RuntimeErrors.
fn py_err(e: edgetpu::Error) -> PyErr {
    match e.kind() {
        ErrorKind::InvalidArgument | ErrorKind::InvalidModel | ErrorKind::NotFound | ErrorKind::PermissionDenied => {
            PyValueError::new_err(e.to_string())
        }
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

/// TFLite's name of a tensor type (`UINT8`) and NumPy's (`uint8`), when NumPy has one.
fn type_names(code: i8) -> (&'static str, Option<&'static str>) {
    match code {
        0 => ("FLOAT32", Some("float32")),
        1 => ("FLOAT16", Some("float16")),
        2 => ("INT32", Some("int32")),
        3 => ("UINT8", Some("uint8")),
        4 => ("INT64", Some("int64")),
        5 => ("STRING", Some("object")),
        6 => ("BOOL", Some("bool")),
        7 => ("INT16", Some("int16")),
        8 => ("COMPLEX64", Some("complex64")),
        9 => ("INT8", Some("int8")),
        10 => ("FLOAT64", Some("float64")),
        11 => ("COMPLEX128", Some("complex128")),
        12 => ("UINT64", Some("uint64")),
        13 => ("RESOURCE", None),
        14 => ("VARIANT", None),
        15 => ("UINT32", Some("uint32")),
        16 => ("UINT16", Some("uint16")),
        17 => ("INT4", None),
        _ => ("UNKNOWN", None),
    }
}

/// TFLite's name of the type of a NumPy array, for error messages (`FLOAT32`, `INT64`).
fn numpy_type_name(dtype: &Bound<'_, numpy::PyArrayDescr>) -> String {
    (0..=17i8)
        .filter_map(|c| Some((type_names(c).0, type_names(c).1?)))
        .find(|(_, n)| numpy::PyArrayDescr::new(dtype.py(), *n).is_ok_and(|d| d.is_equiv_to(dtype)))
        .map_or_else(|| dtype.to_string().to_uppercase(), |(t, _)| t.to_string())
}

/// Runs `$body` with `$T` the Rust element type of TFLite type `$code`, or `$other` for types
/// without one that is plain old data in both NumPy and Rust (float16, bool, strings...).
macro_rules! with_element {
    ($code:expr, $T:ident => $body:expr, _ => $other:expr) => {
        match $code {
            0 => {
                type $T = f32;
                $body
            }
            2 => {
                type $T = i32;
                $body
            }
            3 => {
                type $T = u8;
                $body
            }
            4 => {
                type $T = i64;
                $body
            }
            7 => {
                type $T = i16;
                $body
            }
            9 => {
                type $T = i8;
                $body
            }
            10 => {
                type $T = f64;
                $body
            }
            12 => {
                type $T = u64;
                $body
            }
            15 => {
                type $T = u32;
                $body
            }
            16 => {
                type $T = u16;
                $body
            }
            _ => $other,
        }
    };
}

/// Copies the elements of `array` (already checked to be of type `T`, any layout) into `dst`.
fn copy_in<T: Element + bytemuck::Pod>(array: &Bound<'_, PyUntypedArray>, dst: &mut [u8]) -> PyResult<()> {
    let typed = array.cast::<PyArrayDyn<T>>()?;
    let ro = typed.try_readonly().map_err(|e| PyValueError::new_err(format!("Cannot set tensor: {e}")))?;
    let view = ro.as_array();
    // `as_slice` only in C order (NumPy's own `as_slice` also takes Fortran order).
    match view.as_slice() {
        Some(src) => dst.copy_from_slice(bytemuck::cast_slice(src)),
        None => {
            let size = std::mem::size_of::<T>();
            for (d, v) in dst.chunks_exact_mut(size).zip(view.iter()) {
                d.copy_from_slice(bytemuck::bytes_of(v));
            }
        }
    }
    Ok(())
}

/// A new array of type `T` and shape `shape` holding a copy of `bytes`.
fn copy_out<'py, T: Element + bytemuck::Pod>(
    py: Python<'py>,
    bytes: &[u8],
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    let values: Vec<T> = bytemuck::pod_collect_to_vec(bytes);
    Ok(PyArray1::from_vec(py, values).reshape(shape)?.into_any())
}

/// A Coral (or a simulated one) opened for interpreters: what `load_delegate` returns.
#[pyclass(module = "edgetpu._native", name = "Delegate", frozen)]
struct Delegate {
    runtime: Arc<Runtime>,
    library: String,
    options: String,
}

#[pymethods]
impl Delegate {
    /// Opens the devices `device` names (`usb`, `usb:N`, `pci`, `pci:N`, `sim`, `sim:pci`, or ``
    /// for the first one attached); ValueError when there is none.
    #[new]
    fn new(py: Python<'_>, library: String, device: String) -> PyResult<Self> {
        let fail = |reason: String| PyValueError::new_err(format!("Failed to load delegate from {library}\n{reason}"));
        let spec = DeviceSpec::parse(&device).map_err(|e| fail(e.to_string()))?;
        let spec = match spec {
            DeviceSpec::Cpu => return Err(fail("device `cpu` is not an Edge TPU".into())),
            DeviceSpec::Auto => match spec.resolve() {
                Some(s) => s,
                None => return Err(fail("no Edge TPU device attached".into())),
            },
            s => s,
        };
        let runtime = py.detach(|| Runtime::open(&spec, RuntimeOptions::default())).map_err(|e| fail(e.to_string()))?;
        Ok(Delegate { runtime: Arc::new(runtime), library, options: device })
    }

    /// The devices opened, by selection string.
    #[getter]
    fn devices(&self) -> Vec<String> {
        self.runtime.devices().to_vec()
    }

    /// Whether they are simulated.
    #[getter]
    fn simulated(&self) -> bool {
        self.runtime.is_simulated()
    }

    /// The library name it was loaded as.
    #[getter]
    fn library(&self) -> &str {
        &self.library
    }

    fn __repr__(&self) -> String {
        format!("<edgetpu.Delegate {} device={:?} on {}>", self.library, self.options, self.runtime.devices().join(","))
    }
}

/// Keeps an interpreter alive while NumPy arrays over its memory exist (their `base`), and counts
/// them: `invoke` refuses to run while any exists, as TFLite does.
#[pyclass(module = "edgetpu._native", name = "TensorBuffer", frozen)]
struct TensorBuffer {
    _owner: Py<NativeInterpreter>,
    live: Arc<AtomicUsize>,
}

impl Drop for TensorBuffer {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The interpreter under `edgetpu.Interpreter`. Tensors are addressed by their index in the
/// model's main subgraph, as TFLite numbers them.
#[pyclass(module = "edgetpu._native", name = "NativeInterpreter")]
struct NativeInterpreter {
    model: Arc<Model>,
    /// `Err(message)`: a compiled model without a delegate, which TFLite refuses at
    /// `allocate_tensors`.
    inner: Result<Interpreter, String>,
    views: Arc<AtomicUsize>,
    // Declared after `inner`, so dropped after it: its Edge TPU steps run on these devices.
    _runtime: Option<Arc<Runtime>>,
}

impl NativeInterpreter {
    fn it(&self) -> PyResult<&Interpreter> {
        self.inner.as_ref().map_err(|m| PyRuntimeError::new_err(m.clone()))
    }

    fn it_mut(&mut self) -> PyResult<&mut Interpreter> {
        self.inner.as_mut().map_err(|m| PyRuntimeError::new_err(m.clone()))
    }

    /// Checks a tensor index the way TFLite words it.
    fn index(&self, index: i64) -> PyResult<usize> {
        let n = self.model.subgraphs()[0].tensors.len();
        match usize::try_from(index) {
            Ok(i) if i < n => Ok(i),
            _ => Err(PyValueError::new_err(format!("Invalid tensor index {index} exceeds max tensor index {n}"))),
        }
    }

    /// The resolved shape of tensor `t` (the file's when the model could not be planned).
    fn shape(&self, t: usize) -> Vec<usize> {
        match &self.inner {
            Ok(it) => it.cpu().plan().tensors()[t].shape.clone(),
            Err(_) => {
                self.model.subgraphs()[0].tensors[t].shape.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect()
            }
        }
    }
}

#[pymethods]
impl NativeInterpreter {
    /// Loads and plans a model from a path or from bytes; with a delegate its Edge TPU steps run
    /// on the delegate's devices.
    /// `preserve_all_tensors` keeps every tensor readable after `invoke` (TFLite's
    /// `experimental_preserve_all_tensors`), at the cost of memory.
    #[new]
    #[pyo3(signature = (model_path, model_content, delegate, num_threads, preserve_all_tensors=false))]
    fn new(
        py: Python<'_>,
        model_path: Option<PathBuf>,
        model_content: Option<&Bound<'_, PyBytes>>,
        delegate: Option<&Bound<'_, Delegate>>,
        num_threads: Option<i64>,
        preserve_all_tensors: bool,
    ) -> PyResult<Self> {
        let model = match (model_path, model_content) {
            (Some(p), None) => {
                Model::open(&p).map_err(|e| PyValueError::new_err(format!("Could not open '{}': {e}", p.display())))?
            }
            (None, Some(b)) => Model::from_bytes(b.as_bytes().to_vec())
                .map_err(|e| PyValueError::new_err(format!("The model is not a valid Flatbuffer buffer: {e}")))?,
            _ => return Err(PyValueError::new_err("`model_path` or `model_content` must be specified.")),
        };
        let threads = match num_threads {
            None | Some(-1) => 0,
            Some(n) if n >= 1 => usize::try_from(n).unwrap_or(0),
            Some(n) => return Err(PyValueError::new_err(format!("num_threads should >= 1 or -1, got {n}"))),
        };
        let model = Arc::new(model);
        let runtime = delegate.map(|d| Arc::clone(&d.get().runtime));
        if runtime.is_none() && model.is_compiled() {
            // TFLite's words when no delegate claims the Edge TPU custom op.
            let graph = &model.subgraphs()[0];
            let node = model.custom_ops(graph, EDGETPU_CUSTOM_OP).next().map_or(0, |op| op.index);
            let message = format!(
                "Encountered unresolved custom op: {EDGETPU_CUSTOM_OP}.\nSee instructions: \
                 https://www.tensorflow.org/lite/guide/ops_custom Node number {node} ({EDGETPU_CUSTOM_OP}) failed to \
                 prepare.\n(the model is compiled for the Edge TPU: pass \
                 experimental_delegates=[load_delegate('libedgetpu.so.1')], or run its CPU twin)"
            );
            return Ok(NativeInterpreter { model, inner: Err(message), views: Arc::default(), _runtime: None });
        }
        let keep = if preserve_all_tensors { (0..model.subgraphs()[0].tensors.len()).collect() } else { Vec::new() };
        let options = edgetpu::cpu::Options { threads, keep, ..Default::default() };
        let built = py.detach(|| {
            let builder = Interpreter::builder(Arc::clone(&model)).cpu_options(options);
            match &runtime {
                Some(rt) => builder.runtime(rt).build(),
                None => builder.device(DeviceSpec::Cpu).build(),
            }
        });
        let inner = built.map_err(|e| match e.kind() {
            ErrorKind::Unsupported => PyRuntimeError::new_err(e.to_string()),
            _ => py_err(e),
        })?;
        Ok(NativeInterpreter { model, inner: Ok(inner), views: Arc::default(), _runtime: runtime })
    }

    /// Fails, as TFLite's does, when the model cannot run (a compiled model without delegate).
    fn allocate_tensors(&self) -> PyResult<()> {
        self.it().map(|_| ())
    }

    /// Number of tensors of the main subgraph.
    fn tensor_count(&self) -> usize {
        self.model.subgraphs()[0].tensors.len()
    }

    /// Tensor indices of the inputs.
    fn input_indices(&self) -> Vec<usize> {
        match &self.inner {
            Ok(it) => it.inputs().iter().map(|t| t.index).collect(),
            Err(_) => self.model.subgraphs()[0].inputs.clone(),
        }
    }

    /// Tensor indices of the outputs.
    fn output_indices(&self) -> Vec<usize> {
        match &self.inner {
            Ok(it) => it.outputs().iter().map(|t| t.index).collect(),
            Err(_) => self.model.subgraphs()[0].outputs.clone(),
        }
    }

    /// (name, index, shape, shape_signature, numpy dtype name, scales, zero points, quantized
    /// dimension) of tensor `index`.
    #[allow(clippy::type_complexity)]
    fn tensor_details(
        &self,
        index: i64,
    ) -> PyResult<(String, usize, Vec<usize>, Vec<i64>, Option<&'static str>, Vec<f32>, Vec<i64>, i32)> {
        let t = self.index(index)?;
        let tensor = &self.model.subgraphs()[0].tensors[t];
        let shape = self.shape(t);
        let signature = match &tensor.shape_signature {
            Some(s) => s.iter().map(|&d| i64::from(d)).collect(),
            None => shape.iter().map(|&d| d as i64).collect(),
        };
        let (scales, zero_points, dim) = match &tensor.quantization {
            Some(q) => (q.scale.clone(), q.zero_point.clone(), q.quantized_dimension),
            None => (Vec::new(), Vec::new(), 0),
        };
        Ok((tensor.name.clone(), t, shape, signature, type_names(tensor.dtype.0).1, scales, zero_points, dim))
    }

    /// Copies `value` (an array of the tensor's dtype and shape) into tensor `index`.
    fn set_tensor(&mut self, py: Python<'_>, index: i64, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let t = self.index(index)?;
        let array = match value.cast::<PyUntypedArray>() {
            Ok(a) => a.clone(),
            Err(_) => py.import("numpy")?.call_method1("asarray", (value,))?.cast_into::<PyUntypedArray>()?,
        };
        let tensor = &self.model.subgraphs()[0].tensors[t];
        let (want, numpy_name) = type_names(tensor.dtype.0);
        let name = tensor.name.clone();
        let code = tensor.dtype.0;
        let dtype = array.dtype();
        let same_type = match numpy_name {
            Some(n) => numpy::PyArrayDescr::new(py, n)?.is_equiv_to(&dtype),
            None => false,
        };
        if !same_type {
            return Err(PyValueError::new_err(format!(
                "Cannot set tensor: Got value of type {} but expected type {want} for input {t}, name: {name} ",
                numpy_type_name(&dtype)
            )));
        }
        let shape = self.shape(t);
        let got = array.shape();
        if got.len() != shape.len() {
            return Err(PyValueError::new_err(format!(
                "Cannot set tensor: Dimension mismatch. Got {} but expected {} for input {t}.",
                got.len(),
                shape.len()
            )));
        }
        if let Some(d) = (0..shape.len()).find(|&d| got[d] != shape[d]) {
            return Err(PyValueError::new_err(format!(
                "Cannot set tensor: Dimension mismatch. Got {} but expected {} for dimension {d} of input {t}.",
                got[d], shape[d]
            )));
        }
        let dst = self.it_mut()?.cpu_mut().tensor_mut(t).map_err(|e| {
            PyValueError::new_err(format!("Cannot set tensor: tensor {t} ({name:?}) cannot be written: {e}"))
        })?;
        with_element!(code, T => copy_in::<T>(&array, dst), _ => {
            // Other plain types (float16, bool...): their bytes, in C order.
            let bytes = py
                .import("numpy")?
                .call_method1("ascontiguousarray", (array,))?
                .call_method1("view", ("uint8",))?
                .call_method1("reshape", (-1,))?;
            copy_in::<u8>(bytes.cast::<PyUntypedArray>()?, dst)
        })
    }

    /// A copy of tensor `index`.
    fn get_tensor<'py>(&self, py: Python<'py>, index: i64) -> PyResult<Bound<'py, PyAny>> {
        let t = self.index(index)?;
        let it = self.it()?;
        let bytes = it.cpu().tensor(t).map_err(|e| PyValueError::new_err(format!("Cannot get tensor {t}: {e}")))?;
        let shape = self.shape(t);
        let code = self.model.subgraphs()[0].tensors[t].dtype.0;
        with_element!(code, T => copy_out::<T>(py, bytes, &shape), _ => {
            let Some(numpy_name) = type_names(code).1 else {
                return Err(PyValueError::new_err(format!(
                    "tensor {t} is of type {}, which has no NumPy equivalent",
                    type_names(code).0
                )));
            };
            let raw = PyArray1::from_slice(py, bytes);
            raw.call_method1("view", (numpy_name,))?.call_method1("reshape", (shape,))
        })
    }

    /// A NumPy array over tensor `index`'s memory in the interpreter (read-only for constants,
    /// which are copied). `invoke` refuses to run while such arrays exist.
    #[allow(unsafe_code)]
    fn view<'py>(slf: &Bound<'py, Self>, index: i64) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let mut me = slf.try_borrow_mut()?;
        let t = me.index(index)?;
        let shape = me.shape(t);
        let code = me.model.subgraphs()[0].tensors[t].dtype.0;
        let live = Arc::clone(&me.views);
        let writable = me.it_mut()?.cpu_mut().tensor_mut(t).map(|b| (b.as_mut_ptr(), b.len()));
        let (ptr, len) = match writable {
            Ok(p) => p,
            Err(_) => {
                // A constant (or a tensor whose memory is reused): a read-only copy, or the error.
                drop(me);
                let copy = slf.borrow().get_tensor(py, index)?;
                copy.call_method1("setflags", ((), false))?;
                return Ok(copy);
            }
        };
        drop(me);
        live.fetch_add(1, Ordering::AcqRel);
        let buffer = Bound::new(py, TensorBuffer { _owner: slf.clone().unbind(), live })?;
        with_element!(code, T => {
            let n = len / std::mem::size_of::<T>();
            // SAFETY: `ptr` points to `len` bytes of a tensor in the interpreter's arena: 8-byte
            // aligned (the arena is made of u64 words), so aligned for T, and n * size_of::<T>() ==
            // len. The arena is allocated once when the interpreter is built and never resized or
            // freed before the interpreter, which `buffer` (the array's base) keeps alive. Python
            // touches the array only with the GIL held; the runtime writes the arena only in
            // `set_tensor` and `invoke`, which hold the GIL or (invoke) refuse to run while any such
            // array exists.
            let array = unsafe { ArrayViewMut::from_shape_ptr(IxDyn(&[n]), ptr.cast::<T>()) };
            // SAFETY: as above: the memory outlives `buffer`, and is never reallocated.
            let flat = unsafe { PyArray::borrow_from_array(&array, buffer.into_any()) };
            Ok(flat.reshape(shape)?.into_any())
        }, _ => {
            let Some(numpy_name) = type_names(code).1 else {
                return Err(PyValueError::new_err(format!(
                    "tensor {t} is of type {}, which has no NumPy equivalent",
                    type_names(code).0
                )));
            };
            // SAFETY: as above (bytes need no alignment).
            let array = unsafe { ArrayViewMut::from_shape_ptr(IxDyn(&[len]), ptr) };
            // SAFETY: as above.
            let flat = unsafe { PyArray::borrow_from_array(&array, buffer.into_any()) };
            flat.call_method1("view", (numpy_name,))?.call_method1("reshape", (shape,))
        })
    }

    /// Runs the model, without the GIL.
    fn invoke(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.views.load(Ordering::Acquire) > 0 {
            return Err(PyRuntimeError::new_err(VIEWS_ALIVE));
        }
        let it = self.it_mut()?;
        py.detach(|| it.invoke()).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// NumPy arrays over the interpreter's memory alive now.
    fn live_views(&self) -> usize {
        self.views.load(Ordering::Acquire)
    }

    /// The signature defs: (key, subgraph, [(input name, tensor)], [(output name, tensor)]).
    #[allow(clippy::type_complexity)]
    fn signatures(&self) -> Vec<(String, usize, Vec<(String, usize)>, Vec<(String, usize)>)> {
        self.model
            .signatures()
            .iter()
            .map(|Signature { key, subgraph, inputs, outputs }| {
                (key.clone(), *subgraph, inputs.clone(), outputs.clone())
            })
            .collect()
    }

    /// The devices the Edge TPU steps run on (empty on the CPU).
    #[getter]
    fn devices(&self) -> Vec<String> {
        self.inner.as_ref().map(|it| it.devices().to_vec()).unwrap_or_default()
    }

    /// Whether the model is compiled for the Edge TPU.
    #[getter]
    fn is_compiled(&self) -> bool {
        self.model.is_compiled()
    }
}

/// The Corals attached now: (`usb` or `pci`, selection string).
#[pyfunction]
fn attached_devices() -> Vec<(&'static str, String)> {
    edgetpu::device::spec::attached()
        .into_iter()
        .map(|e| {
            let kind = match e.kind() {
                edgetpu::DeviceKind::Pci => "pci",
                _ => "usb",
            };
            (kind, e.to_string())
        })
        .collect()
}

/// The runtime's version.
#[pyfunction]
fn runtime_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The `edgetpu._native` module.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Delegate>()?;
    m.add_class::<NativeInterpreter>()?;
    m.add_class::<TensorBuffer>()?;
    m.add_function(wrap_pyfunction!(attached_devices, m)?)?;
    m.add_function(wrap_pyfunction!(runtime_version, m)?)?;
    Ok(())
}
