//! Reading transcoder weights: memory-mapped safetensors matrices read row by row, so that a
//! 16k-feature × 26-layer decoder set never has to sit in RAM, plus in-memory matrices for
//! formats that cannot be mapped (GemmaScope `.npz`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};
use safetensors::Dtype;

use crate::cpu_gemm::Strided;
use crate::error::{Context, Error, Result};

/// An opened safetensors file.
pub struct StFile {
    path: PathBuf,
    st: MmapedSafetensors,
}

impl StFile {
    /// Maps `path`.
    pub fn open(path: &Path) -> Result<Arc<Self>> {
        if !path.exists() {
            return Err(Error::Transcoder {
                path: path.to_path_buf(),
                reason: "file not found".into(),
            });
        }
        // SAFETY: read-only mapping of a file adag never writes while it is mapped.
        let st = unsafe { MmapedSafetensors::new(path) }.map_err(|e| Error::Transcoder {
            path: path.to_path_buf(),
            reason: format!("not a valid safetensors file: {e}"),
        })?;
        Ok(Arc::new(StFile {
            path: path.to_path_buf(),
            st,
        }))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether tensor `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.st.get(name).is_ok()
    }

    /// Shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.view(name)?.shape().to_vec())
    }

    fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'_>> {
        self.st.get(name).map_err(|_| Error::Transcoder {
            path: self.path.clone(),
            reason: format!("tensor `{name}` not found"),
        })
    }

    /// Loads a whole tensor as f32 (a copy: the mapped pages it was read from are released).
    pub fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        let view = self.view(name)?;
        let t = self
            .st
            .load(name, device)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| Error::Transcoder {
                path: self.path.clone(),
                reason: format!("tensor `{name}`: {e}"),
            })?;
        adag_core::release_mapped_pages(view.data());
        Ok(t)
    }
}

/// A matrix `[rows, ...]` whose rows can be read individually.
#[derive(Clone)]
pub enum Matrix {
    /// Rows read from a mapped file on demand.
    Mapped {
        /// The file.
        file: Arc<StFile>,
        /// Tensor name.
        name: String,
        /// Full shape; the first dimension indexes rows.
        shape: Vec<usize>,
    },
    /// Held in memory (f32).
    Memory(Tensor),
}

impl Matrix {
    /// A mapped matrix, checking the tensor exists.
    pub fn mapped(file: &Arc<StFile>, name: &str) -> Result<Self> {
        let shape = file.shape(name)?;
        Ok(Matrix::Mapped {
            file: file.clone(),
            name: name.to_string(),
            shape,
        })
    }

    /// Full shape.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Matrix::Mapped { shape, .. } => shape.clone(),
            Matrix::Memory(t) => t.dims().to_vec(),
        }
    }

    /// The file it is mapped from (`None` when held in memory).
    pub fn file(&self) -> Option<&Path> {
        match self {
            Matrix::Mapped { file, .. } => Some(&file.path),
            Matrix::Memory(_) => None,
        }
    }

    /// Where it comes from, for messages.
    pub fn describe(&self) -> String {
        match self {
            Matrix::Mapped { file, name, .. } => format!("{} in {}", name, file.path.display()),
            Matrix::Memory(_) => "in-memory matrix".into(),
        }
    }

    /// The whole matrix as f32.
    pub fn load(&self, device: &Device) -> Result<Tensor> {
        match self {
            Matrix::Mapped { file, name, .. } => file.load(name, device),
            Matrix::Memory(t) => t.to_device(device).ctx("moving matrix"),
        }
    }

    /// `x · selfᵀ` `[T, rows]` for `x` `[T, cols]`, read straight from the mapped file when it
    /// holds this matrix as little-endian `f32` at a 4-byte-aligned offset and `x` is a
    /// contiguous `f32` CPU tensor; `None` otherwise (the caller loads the matrix instead).
    ///
    /// Encoding every feature reads the whole encoder once per prompt. Loading it first copied
    /// it into fresh memory (a page fault per 4 KiB page, then the copy) only for the product
    /// to pack it again; on gemma-2-2b's 16k-feature layers that was 151 MB per layer.
    pub fn times_transposed(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let Matrix::Mapped { file, name, shape } = self else {
            return Ok(None);
        };
        let (t, cols) = match x.dims2() {
            Ok(dims) => dims,
            Err(_) => return Ok(None),
        };
        if shape.len() != 2 || shape[1] != cols || cfg!(target_endian = "big") {
            return Ok(None);
        }
        let rows = shape[0];
        let view = file.view(name)?;
        let data = view.data();
        if view.dtype() != Dtype::F32
            || data.len() != rows * cols * 4
            || !data.as_ptr().cast::<f32>().is_aligned()
        {
            return Ok(None);
        }
        let (x_s, x_l) = x.storage_and_layout();
        let candle_core::Storage::Cpu(candle_core::CpuStorage::F32(xv)) = &*x_s else {
            return Ok(None);
        };
        if !x_l.is_contiguous() {
            return Ok(None);
        }
        let xv = &xv[x_l.start_offset()..x_l.start_offset() + t * cols];
        // SAFETY: `data` is rows·cols little-endian f32s (length and dtype checked above) at
        // an f32-aligned address, read-only for as long as `view` lives.
        let w: &[f32] = unsafe { std::slice::from_raw_parts(data.as_ptr().cast(), rows * cols) };
        // The product is written transposed, `[rows, t]`: with a row-major `[t, rows]` result
        // the gemm kernel swaps the operands and repacks the whole encoder into column panels
        // on every call; this way the encoder is read in place and only `x` is packed. The
        // small result is transposed after.
        let mut out: Vec<f32> = Vec::with_capacity(t * rows);
        // SAFETY: out holds t·rows floats, element (i, j) of the [t, rows] product at
        // i + j·t, written whole (accumulate off); x is t rows of cols; wᵀ is read as
        // (k, j) ↦ w[j·cols + k] within its rows·cols elements.
        unsafe {
            crate::cpu_gemm::product(
                (t, rows, cols),
                Strided {
                    ptr: out.as_mut_ptr(),
                    rs: 1,
                    cs: t,
                },
                false,
                Strided::rows(xv.as_ptr(), cols),
                // wᵀ: element (k, j) is w[j·cols + k].
                Strided {
                    ptr: w.as_ptr(),
                    rs: 1,
                    cs: cols,
                },
                crate::cpu_gemm::parallelism(),
            );
            out.set_len(t * rows);
        }
        drop(x_s);
        adag_core::release_mapped_pages(data);
        Tensor::from_vec(out, (rows, t), &Device::Cpu)
            .and_then(|o| o.t()?.contiguous())
            .ctx("encoder product")
            .map(Some)
    }

    /// Rows `ids` as f32, shape `[ids.len(), ...rest]`.
    pub fn rows(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        match self {
            Matrix::Memory(t) => {
                let idx = Tensor::new(ids, t.device()).ctx("row ids")?;
                t.index_select(&idx, 0)
                    .and_then(|r| r.to_device(device))
                    .ctx("selecting rows")
            }
            Matrix::Mapped { file, name, shape } => {
                let view = file.view(name)?;
                let row_len: usize = shape[1..].iter().product();
                let width = view.dtype().bitsize() / 8;
                let data = view.data();
                let mut out = Vec::with_capacity(ids.len() * row_len);
                for &r in ids {
                    let r = r as usize;
                    if r >= shape[0] {
                        return Err(Error::Transcoder {
                            path: file.path.clone(),
                            reason: format!("row {r} of `{name}` requested, it has {}", shape[0]),
                        });
                    }
                    let bytes = &data[r * row_len * width..(r + 1) * row_len * width];
                    decode_into(view.dtype(), bytes, &mut out).map_err(|reason| {
                        Error::Transcoder {
                            path: file.path.clone(),
                            reason: format!("tensor `{name}`: {reason}"),
                        }
                    })?;
                }
                // The whole tensor, not each row: a page fault maps the pages around the
                // faulting one too (the kernel's fault-around), so releasing only the rows'
                // own pages left ~100 MB per gemma-2-2b layer file resident.
                adag_core::release_mapped_pages(data);
                let mut dims = vec![ids.len()];
                dims.extend_from_slice(&shape[1..]);
                Tensor::from_vec(out, dims, device).ctx("decoder rows")
            }
        }
    }
}

fn decode_into(dtype: Dtype, bytes: &[u8], out: &mut Vec<f32>) -> std::result::Result<(), String> {
    match dtype {
        Dtype::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Dtype::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        Dtype::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        Dtype::F64 => {
            out.extend(bytes.chunks_exact(8).map(|c| {
                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }))
        }
        other => return Err(format!("dtype {other:?} is not a float type")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::{Matrix, StFile};

    /// The encoder product read straight from the mapped file equals candle's product on the
    /// loaded matrix; a bf16 file is left to the caller.
    #[test]
    fn mapped_product_matches_the_loaded_matrix() {
        let dev = Device::Cpu;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let (rows, cols, t) = (37, 24, 5);
        let w = Tensor::randn(0f32, 1.0, (rows, cols), &dev).unwrap();
        let b = w.to_dtype(DType::BF16).unwrap();
        // With an odd-sized byte tensor beside it: safetensors writers put the widest dtypes
        // first, so the f32 matrix stays aligned (as in every transcoder file).
        let pad = Tensor::zeros(3, DType::U8, &dev).unwrap();
        candle_core::safetensors::save(
            &[("a_pad", pad), ("W_enc", w.clone()), ("W_bf16", b)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            &path,
        )
        .unwrap();
        let file = StFile::open(&path).unwrap();
        let x = Tensor::randn(0f32, 1.0, (t, cols), &dev).unwrap();
        let m = Matrix::mapped(&file, "W_enc").unwrap();
        let want = x.matmul(&m.load(&dev).unwrap().t().unwrap()).unwrap();
        let got = m
            .times_transposed(&x)
            .unwrap()
            .expect("an aligned f32 mapped matrix multiplies in place");
        assert_eq!(got.dims(), [t, rows]);
        let d = adag_testkit::max_abs_diff(&got, &want);
        assert!(d < 1e-5, "max |diff| {d}");
        let bf = Matrix::mapped(&file, "W_bf16").unwrap();
        assert!(bf.times_transposed(&x).unwrap().is_none());
        let mem = Matrix::Memory(w);
        assert!(mem.times_transposed(&x).unwrap().is_none());
    }
}
