//! The GPU backend: every op is a hand-written WGSL compute shader run through
//! wgpu (Vulkan, Metal, DX12). Tensors live in device buffers; work is
//! recorded into one command encoder and submitted in batches, so a training
//! step reads back only what the caller downloads.
//!
//! Shaders live beside this file, one per op family, and are compiled into
//! pipelines once per device, on first use, and cached.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use crate::backend::{Activation, AdamStep, Backend, BatchNormGrads, NormStats, Transpose, Unary};
use crate::conv::{self, Conv2dGeometry};
use crate::{Result, Shape, TensorError, checks};

/// Workgroup size of every one-dimensional kernel.
const WG: usize = 256;
/// Output tile edge of the matrix product.
const MM_TILE: usize = 64;
/// Passes recorded before the encoder is submitted.
const MAX_PENDING_PASSES: usize = 64;
/// How long a read-back may wait for the device before it is an error.
const POLL_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Shader {
    Matmul,
    Elementwise,
    Reduce,
    Loss,
    Random,
    Adam,
    Conv,
    Norm,
}

impl Shader {
    fn source(self) -> &'static str {
        match self {
            Shader::Matmul => include_str!("matmul.wgsl"),
            Shader::Elementwise => include_str!("elementwise.wgsl"),
            Shader::Reduce => include_str!("reduce.wgsl"),
            Shader::Loss => include_str!("loss.wgsl"),
            Shader::Random => include_str!("random.wgsl"),
            Shader::Adam => include_str!("adam.wgsl"),
            Shader::Conv => include_str!("conv.wgsl"),
            Shader::Norm => include_str!("norm.wgsl"),
        }
    }
}

/// What the adapter is and what it allows (for `latentlab info`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuInfo {
    /// Adapter name (e.g. "NVIDIA H100", "llvmpipe (LLVM 15.0.6, 256 bits)").
    pub name: String,
    /// Graphics API wgpu drives it through (Vulkan, Metal, Dx12, Gl).
    pub backend: String,
    /// Discrete, integrated, virtual, CPU (a software rasteriser such as lavapipe) or other.
    pub device_type: String,
    /// Driver name and version as reported.
    pub driver: String,
    /// Largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Largest storage-buffer binding, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Workgroup memory, in bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Threads per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroups per grid dimension.
    pub max_compute_workgroups_per_dimension: u32,
}

struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    passes: usize,
}

struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: GpuInfo,
    /// Per-buffer byte limit (the smaller of buffer and binding limits).
    max_bytes: u64,
    max_groups: u32,
    pipelines: Mutex<HashMap<(Shader, &'static str), Arc<wgpu::ComputePipeline>>>,
    pending: Mutex<Pending>,
    /// First uncaptured device error or loss, reported by the next sync.
    fault: Arc<Mutex<Option<String>>>,
}

/// The wgpu backend. Cheap to clone (a handle to one device).
#[derive(Clone)]
pub struct Wgpu {
    inner: Arc<Inner>,
}

impl fmt::Debug for Wgpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wgpu")
            .field("adapter", &self.inner.info.name)
            .field("backend", &self.inner.info.backend)
            .finish()
    }
}

/// A tensor in a device buffer. `clone` copies the buffer on the device.
pub struct WgpuTensor {
    buf: wgpu::Buffer,
    shape: Shape,
    dev: Arc<Inner>,
}

impl fmt::Debug for WgpuTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WgpuTensor{}", self.shape)
    }
}

impl Clone for WgpuTensor {
    fn clone(&self) -> Self {
        let buf = self.dev.storage(self.shape.len() as u64 * 4);
        {
            let mut p = self.dev.pending();
            let enc = p.encoder.get_or_insert_with(|| self.dev.new_encoder());
            enc.copy_buffer_to_buffer(&self.buf, 0, &buf, 0, self.shape.len() as u64 * 4);
            p.passes += 1;
        }
        WgpuTensor {
            buf,
            shape: self.shape,
            dev: Arc::clone(&self.dev),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn new_encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("latentlab"),
            })
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        lock(&self.pending)
    }

    fn storage(&self, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes.max(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    fn check_fault(&self, op: &'static str) -> Result<()> {
        match lock(&self.fault).clone() {
            Some(detail) => Err(TensorError::Gpu { op, detail }),
            None => Ok(()),
        }
    }

    /// Submits everything recorded so far. The pending lock is held until the
    /// submission is queued, so submissions reach the queue in recording order
    /// even when several threads share the device.
    fn flush(&self, op: &'static str) -> Result<wgpu::SubmissionIndex> {
        let idx = {
            let mut p = self.pending();
            p.passes = 0;
            let enc = p.encoder.take().unwrap_or_else(|| self.new_encoder());
            self.queue.submit([enc.finish()])
        };
        self.check_fault(op)?;
        Ok(idx)
    }

    fn wait(&self, op: &'static str, idx: wgpu::SubmissionIndex) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(idx),
                timeout: Some(POLL_TIMEOUT),
            })
            .map_err(|e| TensorError::Gpu {
                op,
                detail: format!("waiting for the device: {e}"),
            })?;
        self.check_fault(op)
    }

    fn pipeline(&self, shader: Shader, entry: &'static str) -> Arc<wgpu::ComputePipeline> {
        let mut cache = lock(&self.pipelines);
        if let Some(p) = cache.get(&(shader, entry)) {
            return Arc::clone(p);
        }
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(entry),
                source: wgpu::ShaderSource::Wgsl(shader.source().into()),
            });
        let pipeline = Arc::new(self.device.create_compute_pipeline(
            &wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            },
        ));
        cache.insert((shader, entry), Arc::clone(&pipeline));
        pipeline
    }

    /// A 1-D grid of `n_groups` workgroups folded into two dimensions when it
    /// exceeds the per-dimension limit (kernels index `wg.y · nwg.x + wg.x`).
    fn grid(&self, op: &'static str, n_groups: usize) -> Result<(u32, u32)> {
        let max = self.max_groups as usize;
        let n = n_groups.max(1);
        if n <= max {
            return Ok((n as u32, 1));
        }
        let y = n.div_ceil(max);
        if y > max {
            return Err(TensorError::InvalidArgument {
                op,
                detail: format!("{n} workgroups exceed the device grid"),
            });
        }
        Ok((max as u32, y as u32))
    }

    /// Records one compute pass. Binding 0 is the uniform `params`; `buffers`
    /// are the storage bindings the entry point uses.
    fn dispatch(
        &self,
        shader: Shader,
        entry: &'static str,
        params: &[u8],
        buffers: &[(u32, &wgpu::Buffer)],
        groups: (u32, u32),
    ) {
        let pipeline = self.pipeline(shader, entry);
        let uniform = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: params,
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        entries.extend(buffers.iter().map(|(b, buf)| wgpu::BindGroupEntry {
            binding: *b,
            resource: buf.as_entire_binding(),
        }));
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(entry),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let full = {
            let mut p = self.pending();
            let enc = p.encoder.get_or_insert_with(|| self.new_encoder());
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(entry),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups(groups.0, groups.1, 1);
            }
            p.passes += 1;
            p.passes >= MAX_PENDING_PASSES
        };
        if full {
            // Errors surface at the next read-back, which checks the fault slot.
            let _ = self.flush(entry);
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EwParams {
    len: u32,
    cols: u32,
    kind: u32,
    _pad: u32,
    alpha: f32,
    _p: [f32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NormParams {
    rows: u32,
    channels: u32,
    plane: u32,
    flags: u32,
    eps: f32,
    _p: [f32; 3],
}

const HAS_GAMMA: u32 = 1;
const HAS_BETA: u32 = 2;
const BATCH_STATS: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ReduceParams {
    rows: u32,
    cols: u32,
    _p: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LossParams {
    len: u32,
    cols: u32,
    shared_lv: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RandomParams {
    len: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream_lo: u32,
    stream_hi: u32,
    _p: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AdamParams {
    len: u32,
    _p0: [u32; 3],
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bc1: f32,
    bc2: f32,
    decay: f32,
    _p1: f32,
}

impl Wgpu {
    /// Opens the first high-performance adapter wgpu finds (honouring the
    /// `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` environment variables).
    pub fn new() -> Result<Self> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        }))
        .map_err(|e| {
            TensorError::NoAdapter(format!(
                "{e} (install a Vulkan driver; on Debian `apt-get install mesa-vulkan-drivers` provides the software device lavapipe)"
            ))
        })?;
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("latentlab"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        }))
        .map_err(|e| TensorError::NoAdapter(format!("the adapter refused a device: {e}")))?;
        let fault = Arc::new(Mutex::new(None::<String>));
        let slot = Arc::clone(&fault);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&slot).get_or_insert_with(|| e.to_string());
        }));
        let slot = Arc::clone(&fault);
        device.set_device_lost_callback(move |reason, msg| {
            lock(&slot).get_or_insert_with(|| format!("device lost ({reason:?}): {msg}"));
        });
        let a = adapter.get_info();
        let info = GpuInfo {
            name: a.name.clone(),
            backend: format!("{:?}", a.backend),
            device_type: format!("{:?}", a.device_type),
            driver: format!("{} {}", a.driver, a.driver_info).trim().to_string(),
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        };
        let max_bytes = info
            .max_buffer_size
            .min(info.max_storage_buffer_binding_size);
        Ok(Self {
            inner: Arc::new(Inner {
                device,
                queue,
                max_groups: info.max_compute_workgroups_per_dimension.max(1),
                info,
                max_bytes,
                pipelines: Mutex::new(HashMap::new()),
                pending: Mutex::new(Pending {
                    encoder: None,
                    passes: 0,
                }),
                fault,
            }),
        })
    }

    /// The adapter and its limits.
    pub fn info(&self) -> &GpuInfo {
        &self.inner.info
    }

    fn alloc(&self, op: &'static str, shape: Shape) -> Result<WgpuTensor> {
        checks::nonempty(op, shape)?;
        let bytes = (shape.len() as u64).saturating_mul(4);
        if bytes > self.inner.max_bytes || shape.len() > u32::MAX as usize {
            return Err(TensorError::TooLarge {
                op,
                shape,
                bytes,
                limit: self.inner.max_bytes,
            });
        }
        Ok(WgpuTensor {
            buf: self.inner.storage(bytes),
            shape,
            dev: Arc::clone(&self.inner),
        })
    }

    fn same_device(&self, op: &'static str, ts: &[&WgpuTensor]) -> Result<()> {
        if ts.iter().all(|t| Arc::ptr_eq(&t.dev, &self.inner)) {
            Ok(())
        } else {
            Err(TensorError::InvalidArgument {
                op,
                detail: "tensor belongs to another GPU device".into(),
            })
        }
    }

    fn groups_for(&self, op: &'static str, len: usize, per_thread: usize) -> Result<(u32, u32)> {
        self.inner.grid(op, len.div_ceil(per_thread).div_ceil(WG))
    }

    fn ew(
        &self,
        entry: &'static str,
        x: &WgpuTensor,
        y: Option<&WgpuTensor>,
        g: Option<&WgpuTensor>,
        kind: u32,
        alpha: f32,
    ) -> Result<WgpuTensor> {
        let out = self.alloc(entry, x.shape)?;
        let params = EwParams {
            len: x.shape.len() as u32,
            cols: x.shape.cols as u32,
            kind,
            _pad: 0,
            alpha,
            _p: [0.0; 3],
        };
        let mut bufs = vec![(1, &x.buf)];
        if let Some(y) = y {
            bufs.push((2, &y.buf));
        }
        if let Some(g) = g {
            bufs.push((3, &g.buf));
        }
        bufs.push((4, &out.buf));
        let groups = self.groups_for(entry, x.shape.len(), 1)?;
        self.inner.dispatch(
            Shader::Elementwise,
            entry,
            bytemuck::bytes_of(&params),
            &bufs,
            groups,
        );
        Ok(out)
    }

    /// Runs a `loss.wgsl` entry with inputs `ins` and as many outputs as `n_out`.
    fn loss(
        &self,
        entry: &'static str,
        ins: &[&WgpuTensor],
        n_out: usize,
        shared_lv: bool,
    ) -> Result<Vec<WgpuTensor>> {
        let shape = ins[0].shape;
        let outs = (0..n_out)
            .map(|_| self.alloc(entry, shape))
            .collect::<Result<Vec<_>>>()?;
        let params = LossParams {
            len: shape.len() as u32,
            cols: shape.cols as u32,
            shared_lv: u32::from(shared_lv),
            _pad: 0,
        };
        let mut bufs: Vec<(u32, &wgpu::Buffer)> =
            ins.iter().zip(1..).map(|(t, b)| (b, &t.buf)).collect();
        bufs.extend(outs.iter().zip(4..).map(|(t, b)| (b, &t.buf)));
        let groups = self.groups_for(entry, shape.len(), 1)?;
        self.inner.dispatch(
            Shader::Loss,
            entry,
            bytemuck::bytes_of(&params),
            &bufs,
            groups,
        );
        Ok(outs)
    }

    /// Runs a `norm.wgsl` entry: `buffers` are its storage bindings, `groups`
    /// how many workgroups (one per channel or row for reductions).
    fn norm_kernel(
        &self,
        entry: &'static str,
        params: NormParams,
        buffers: &[(u32, &wgpu::Buffer)],
        groups: usize,
    ) -> Result<()> {
        let groups = self.inner.grid(entry, groups)?;
        self.inner.dispatch(
            Shader::Norm,
            entry,
            bytemuck::bytes_of(&params),
            buffers,
            groups,
        );
        Ok(())
    }

    /// The flags and γ/β bindings of a batch normalisation (a missing γ or β
    /// binds `x` in its place, unread).
    fn affine_flags(gamma: Option<&WgpuTensor>, beta: Option<&WgpuTensor>) -> u32 {
        (u32::from(gamma.is_some()) * HAS_GAMMA) | (u32::from(beta.is_some()) * HAS_BETA)
    }

    /// Runs a `conv.wgsl` entry over `len` outputs of shape `out_shape`.
    fn conv_kernel(
        &self,
        entry: &'static str,
        words: [u32; 16],
        x: &WgpuTensor,
        bias: Option<&WgpuTensor>,
        out_shape: Shape,
    ) -> Result<WgpuTensor> {
        let out = self.alloc(entry, out_shape)?;
        let mut bufs = vec![(1, &x.buf)];
        if let Some(b) = bias {
            bufs.push((2, &b.buf));
        }
        bufs.push((4, &out.buf));
        let groups = self.groups_for(entry, out_shape.len(), 1)?;
        self.inner.dispatch(
            Shader::Conv,
            entry,
            bytemuck::cast_slice(&words),
            &bufs,
            groups,
        );
        Ok(out)
    }

    fn random_params(len: usize, seed: u64, stream: u64) -> RandomParams {
        RandomParams {
            len: len as u32,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            stream_lo: stream as u32,
            stream_hi: (stream >> 32) as u32,
            _p: [0; 3],
        }
    }
}

impl Backend for Wgpu {
    type Tensor = WgpuTensor;

    fn name(&self) -> String {
        format!(
            "wgpu:{} ({})",
            self.inner.info.name, self.inner.info.backend
        )
    }

    fn shape(&self, t: &WgpuTensor) -> Shape {
        t.shape
    }

    fn upload(&self, data: &[f32], shape: Shape) -> Result<WgpuTensor> {
        checks::upload("upload", data.len(), shape)?;
        let t = self.alloc("upload", shape)?;
        self.inner
            .queue
            .write_buffer(&t.buf, 0, bytemuck::cast_slice(data));
        Ok(t)
    }

    fn download(&self, t: &WgpuTensor) -> Result<Vec<f32>> {
        self.same_device("download", &[t])?;
        let bytes = t.shape.len() as u64 * 4;
        let staging = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("download"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut p = self.inner.pending();
            let enc = p.encoder.get_or_insert_with(|| self.inner.new_encoder());
            enc.copy_buffer_to_buffer(&t.buf, 0, &staging, 0, bytes);
        }
        let idx = self.inner.flush("download")?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.inner.wait("download", idx)?;
        rx.recv_timeout(POLL_TIMEOUT)
            .map_err(|_| TensorError::Gpu {
                op: "download",
                detail: "the device never mapped the read-back buffer".into(),
            })?
            .map_err(|e| TensorError::Gpu {
                op: "download",
                detail: e.to_string(),
            })?;
        let out = {
            let view = staging.get_mapped_range(..).map_err(|e| TensorError::Gpu {
                op: "download",
                detail: format!("{e:?}"),
            })?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.unmap();
        Ok(out)
    }

    fn zeros(&self, shape: Shape) -> Result<WgpuTensor> {
        // wgpu zero-initialises every new buffer.
        self.alloc("zeros", shape)
    }

    fn sync(&self) -> Result<()> {
        let idx = self.inner.flush("sync")?;
        self.inner.wait("sync", idx)
    }

    fn reshape(&self, t: WgpuTensor, shape: Shape) -> Result<WgpuTensor> {
        checks::reshape(t.shape, shape)?;
        Ok(WgpuTensor { shape, ..t })
    }

    fn im2col(&self, x: &WgpuTensor, g: &Conv2dGeometry) -> Result<WgpuTensor> {
        self.same_device("im2col", &[x])?;
        checks::images("im2col", x.shape, g)?;
        let n = x.shape.rows;
        let out = Shape::new(n * g.positions(), g.patch_len());
        self.conv_kernel("im2col", conv::gpu_words(g, n), x, None, out)
    }

    fn col2im(&self, cols: &WgpuTensor, g: &Conv2dGeometry) -> Result<WgpuTensor> {
        self.same_device("col2im", &[cols])?;
        let n = checks::patches("col2im", cols.shape, g)?;
        let out = Shape::new(n, g.input_len());
        self.conv_kernel("col2im", conv::gpu_words(g, n), cols, None, out)
    }

    fn batch_transpose(&self, x: &WgpuTensor, p: usize, q: usize) -> Result<WgpuTensor> {
        self.same_device("batch_transpose", &[x])?;
        checks::blocks("batch_transpose", x.shape, p, q)?;
        let mut words = [0u32; 16];
        words[..3].copy_from_slice(&[x.shape.rows as u32, p as u32, q as u32]);
        self.conv_kernel("batch_transpose", words, x, None, x.shape)
    }

    fn add_channel_bias(&self, x: &WgpuTensor, bias: &WgpuTensor) -> Result<WgpuTensor> {
        self.same_device("add_channel_bias", &[x, bias])?;
        let plane = checks::channel_bias("add_channel_bias", x.shape, bias.shape)?;
        let mut words = [0u32; 16];
        words[..3].copy_from_slice(&[x.shape.rows as u32, bias.shape.cols as u32, plane as u32]);
        self.conv_kernel("add_channel_bias", words, x, Some(bias), x.shape)
    }

    fn matmul(
        &self,
        a: &WgpuTensor,
        ta: Transpose,
        b: &WgpuTensor,
        tb: Transpose,
    ) -> Result<WgpuTensor> {
        self.same_device("matmul", &[a, b])?;
        let (m, k, n) = checks::matmul(a.shape, ta, b.shape, tb)?;
        let out = self.alloc("matmul", Shape::new(m, n))?;
        let (a_rs, a_cs) = if ta == Transpose::Yes {
            (1, a.shape.cols)
        } else {
            (a.shape.cols, 1)
        };
        let (b_rs, b_cs) = if tb == Transpose::Yes {
            (1, b.shape.cols)
        } else {
            (b.shape.cols, 1)
        };
        let params = MatmulParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            a_rs: a_rs as u32,
            a_cs: a_cs as u32,
            b_rs: b_rs as u32,
            b_cs: b_cs as u32,
            _pad: 0,
        };
        let gx = n.div_ceil(MM_TILE);
        let gy = m.div_ceil(MM_TILE);
        let max = self.inner.max_groups as usize;
        if gx > max || gy > max {
            return Err(TensorError::TooLarge {
                op: "matmul",
                shape: Shape::new(m, n),
                bytes: (m * n * 4) as u64,
                limit: (max * MM_TILE) as u64,
            });
        }
        self.inner.dispatch(
            Shader::Matmul,
            "matmul",
            bytemuck::bytes_of(&params),
            &[(1, &a.buf), (2, &b.buf), (3, &out.buf)],
            (gx as u32, gy as u32),
        );
        Ok(out)
    }

    fn add_row(&self, x: &WgpuTensor, bias: &WgpuTensor) -> Result<WgpuTensor> {
        self.same_device("add_row", &[x, bias])?;
        checks::row_vector("add_row", x.shape, bias.shape)?;
        self.ew("add_row", x, Some(bias), None, 0, 0.0)
    }

    fn sum_rows(&self, x: &WgpuTensor) -> Result<WgpuTensor> {
        self.same_device("sum_rows", &[x])?;
        let out = self.alloc("sum_rows", Shape::new(1, x.shape.cols))?;
        let params = ReduceParams {
            rows: x.shape.rows as u32,
            cols: x.shape.cols as u32,
            _p: [0; 2],
        };
        let groups = self.groups_for("sum_rows", x.shape.cols, 1)?;
        self.inner.dispatch(
            Shader::Reduce,
            "sum_rows",
            bytemuck::bytes_of(&params),
            &[(1, &x.buf), (2, &out.buf)],
            groups,
        );
        Ok(out)
    }

    fn sum_cols(&self, x: &WgpuTensor) -> Result<WgpuTensor> {
        self.same_device("sum_cols", &[x])?;
        let out = self.alloc("sum_cols", Shape::new(x.shape.rows, 1))?;
        let params = ReduceParams {
            rows: x.shape.rows as u32,
            cols: x.shape.cols as u32,
            _p: [0; 2],
        };
        let groups = self.inner.grid("sum_cols", x.shape.rows)?;
        self.inner.dispatch(
            Shader::Reduce,
            "sum_cols",
            bytemuck::bytes_of(&params),
            &[(1, &x.buf), (2, &out.buf)],
            groups,
        );
        Ok(out)
    }

    fn activation(&self, act: Activation, x: &WgpuTensor) -> Result<WgpuTensor> {
        self.same_device("activation", &[x])?;
        let (kind, alpha) = act.code();
        self.ew("act_forward", x, None, None, kind, alpha)
    }

    fn activation_backward(
        &self,
        act: Activation,
        x: &WgpuTensor,
        y: &WgpuTensor,
        grad_y: &WgpuTensor,
    ) -> Result<WgpuTensor> {
        self.same_device("activation_backward", &[x, y, grad_y])?;
        checks::same("activation_backward", x.shape, y.shape)?;
        checks::same("activation_backward", x.shape, grad_y.shape)?;
        let (kind, alpha) = act.code();
        self.ew("act_backward", x, Some(y), Some(grad_y), kind, alpha)
    }

    fn bce_with_logits_elementwise(
        &self,
        logits: &WgpuTensor,
        targets: &WgpuTensor,
    ) -> Result<(WgpuTensor, WgpuTensor)> {
        self.same_device("bce_with_logits", &[logits, targets])?;
        checks::same("bce_with_logits", logits.shape, targets.shape)?;
        let mut o = self
            .loss("bce_logits", &[logits, targets], 2, false)?
            .into_iter();
        let (Some(loss), Some(grad)) = (o.next(), o.next()) else {
            unreachable!("two outputs requested")
        };
        Ok((loss, grad))
    }

    fn gaussian_nll_elementwise(
        &self,
        x: &WgpuTensor,
        mean: &WgpuTensor,
        logvar: &WgpuTensor,
    ) -> Result<(WgpuTensor, WgpuTensor, WgpuTensor)> {
        let op = "gaussian_nll";
        self.same_device(op, &[x, mean, logvar])?;
        checks::same(op, x.shape, mean.shape)?;
        let shared = checks::logvar_like(op, mean.shape, logvar.shape)?;
        let mut o = self.loss(op, &[x, mean, logvar], 3, shared)?.into_iter();
        let (Some(l), Some(gm), Some(glv)) = (o.next(), o.next(), o.next()) else {
            unreachable!("three outputs requested")
        };
        Ok((l, gm, glv))
    }

    fn kl_normal_elementwise(
        &self,
        mu: &WgpuTensor,
        logvar: &WgpuTensor,
    ) -> Result<(WgpuTensor, WgpuTensor, WgpuTensor)> {
        self.same_device("kl_normal", &[mu, logvar])?;
        checks::same("kl_normal", mu.shape, logvar.shape)?;
        // Binding 3 is unused by this entry point; outputs are 4, 5, 6.
        let mut o = self.loss("kl_normal", &[mu, logvar], 3, false)?.into_iter();
        let (Some(kl), Some(gm), Some(glv)) = (o.next(), o.next(), o.next()) else {
            unreachable!("three outputs requested")
        };
        Ok((kl, gm, glv))
    }

    fn randn(&self, shape: Shape, key: u64, stream: u64) -> Result<WgpuTensor> {
        let out = self.alloc("randn", shape)?;
        let params = Self::random_params(shape.len(), key, stream);
        let groups = self.groups_for("randn", shape.len(), 4)?;
        self.inner.dispatch(
            Shader::Random,
            "randn",
            bytemuck::bytes_of(&params),
            &[(4, &out.buf)],
            groups,
        );
        Ok(out)
    }

    fn reparameterize(
        &self,
        mu: &WgpuTensor,
        logvar: &WgpuTensor,
        key: u64,
        stream: u64,
    ) -> Result<(WgpuTensor, WgpuTensor)> {
        self.same_device("reparameterize", &[mu, logvar])?;
        checks::same("reparameterize", mu.shape, logvar.shape)?;
        let z = self.alloc("reparameterize", mu.shape)?;
        let eps = self.alloc("reparameterize", mu.shape)?;
        let params = Self::random_params(mu.shape.len(), key, stream);
        let groups = self.groups_for("reparameterize", mu.shape.len(), 4)?;
        self.inner.dispatch(
            Shader::Random,
            "reparameterize",
            bytemuck::bytes_of(&params),
            &[(1, &mu.buf), (2, &logvar.buf), (3, &z.buf), (4, &eps.buf)],
            groups,
        );
        Ok((z, eps))
    }

    fn adam_step(
        &self,
        param: &mut WgpuTensor,
        grad: &WgpuTensor,
        m: &mut WgpuTensor,
        v: &mut WgpuTensor,
        hp: &AdamStep,
    ) -> Result<()> {
        let op = "adam_step";
        self.same_device(op, &[param, grad, m, v])?;
        checks::same(op, param.shape, grad.shape)?;
        checks::same(op, param.shape, m.shape)?;
        checks::same(op, param.shape, v.shape)?;
        let (bc1, bc2) = hp.validate()?;
        let params = AdamParams {
            len: param.shape.len() as u32,
            _p0: [0; 3],
            lr: hp.lr,
            beta1: hp.beta1,
            beta2: hp.beta2,
            eps: hp.eps,
            bc1,
            bc2,
            decay: 1.0 - hp.lr * hp.weight_decay,
            _p1: 0.0,
        };
        let groups = self.groups_for(op, param.shape.len(), 1)?;
        self.inner.dispatch(
            Shader::Adam,
            "adam",
            bytemuck::bytes_of(&params),
            &[(1, &grad.buf), (2, &param.buf), (3, &m.buf), (4, &v.buf)],
            groups,
        );
        Ok(())
    }

    fn axpy(&self, alpha: f32, x: &WgpuTensor, y: &mut WgpuTensor) -> Result<()> {
        self.same_device("axpy", &[x, y])?;
        checks::same("axpy", x.shape, y.shape)?;
        checks::finite_scalar("axpy", "alpha", alpha)?;
        let params = EwParams {
            len: x.shape.len() as u32,
            cols: x.shape.cols as u32,
            kind: 0,
            _pad: 0,
            alpha,
            _p: [0.0; 3],
        };
        let groups = self.groups_for("axpy", x.shape.len(), 1)?;
        self.inner.dispatch(
            Shader::Elementwise,
            "axpy",
            bytemuck::bytes_of(&params),
            &[(1, &x.buf), (4, &y.buf)],
            groups,
        );
        Ok(())
    }

    fn scale(&self, alpha: f32, x: &WgpuTensor) -> Result<WgpuTensor> {
        self.same_device("scale", &[x])?;
        checks::finite_scalar("scale", "alpha", alpha)?;
        self.ew("scale", x, None, None, 0, alpha)
    }

    fn unary(&self, op: Unary, x: &WgpuTensor) -> Result<WgpuTensor> {
        self.same_device("unary", &[x])?;
        self.ew("unary_forward", x, None, None, op.code(), 0.0)
    }

    fn unary_backward(
        &self,
        op: Unary,
        x: &WgpuTensor,
        y: &WgpuTensor,
        grad_y: &WgpuTensor,
    ) -> Result<WgpuTensor> {
        self.same_device("unary_backward", &[x, y, grad_y])?;
        checks::same("unary_backward", x.shape, y.shape)?;
        checks::same("unary_backward", x.shape, grad_y.shape)?;
        self.ew("unary_backward", x, Some(y), Some(grad_y), op.code(), 0.0)
    }

    fn logsumexp_rows(&self, x: &WgpuTensor) -> Result<WgpuTensor> {
        let op = "logsumexp_rows";
        self.same_device(op, &[x])?;
        checks::nonempty(op, x.shape)?;
        let out = self.alloc(op, Shape::new(x.shape.rows, 1))?;
        let params = NormParams {
            rows: x.shape.rows as u32,
            channels: 1,
            plane: x.shape.cols as u32,
            flags: 0,
            eps: 0.0,
            _p: [0.0; 3],
        };
        self.norm_kernel(op, params, &[(1, &x.buf), (4, &out.buf)], x.shape.rows)?;
        Ok(out)
    }

    fn logsumexp_backward(
        &self,
        x: &WgpuTensor,
        lse: &WgpuTensor,
        grad: &WgpuTensor,
    ) -> Result<WgpuTensor> {
        let op = "logsumexp_backward";
        self.same_device(op, &[x, lse, grad])?;
        checks::per_row(op, x.shape, lse.shape, "lse")?;
        checks::per_row(op, x.shape, grad.shape, "∂L/∂lse")?;
        let out = self.alloc(op, x.shape)?;
        let params = NormParams {
            rows: x.shape.rows as u32,
            channels: 1,
            plane: x.shape.cols as u32,
            flags: 0,
            eps: 0.0,
            _p: [0.0; 3],
        };
        let bufs = [(1, &x.buf), (2, &lse.buf), (8, &grad.buf), (4, &out.buf)];
        self.norm_kernel(op, params, &bufs, x.shape.len().div_ceil(WG))?;
        Ok(out)
    }

    fn channel_moments(&self, x: &WgpuTensor, channels: usize) -> Result<(WgpuTensor, WgpuTensor)> {
        let op = "channel_moments";
        self.same_device(op, &[x])?;
        let plane = checks::planes(op, x.shape, channels)?;
        let mean = self.alloc(op, Shape::new(1, channels))?;
        let var = self.alloc(op, Shape::new(1, channels))?;
        let params = NormParams {
            rows: x.shape.rows as u32,
            channels: channels as u32,
            plane: plane as u32,
            flags: 0,
            eps: 0.0,
            _p: [0.0; 3],
        };
        let bufs = [(1, &x.buf), (4, &mean.buf), (5, &var.buf)];
        self.norm_kernel(op, params, &bufs, channels)?;
        Ok((mean, var))
    }

    fn batch_norm(
        &self,
        x: &WgpuTensor,
        mean: &WgpuTensor,
        var: &WgpuTensor,
        gamma: Option<&WgpuTensor>,
        beta: Option<&WgpuTensor>,
        eps: f32,
    ) -> Result<WgpuTensor> {
        let op = "batch_norm";
        self.same_device(op, &[x, mean, var])?;
        self.same_device(op, &gamma.into_iter().chain(beta).collect::<Vec<_>>())?;
        let plane = checks::batch_norm(
            op,
            x.shape,
            mean.shape,
            var.shape,
            [gamma.map(|t| t.shape), beta.map(|t| t.shape)],
            eps,
        )?;
        let out = self.alloc(op, x.shape)?;
        let params = NormParams {
            rows: x.shape.rows as u32,
            channels: mean.shape.cols as u32,
            plane: plane as u32,
            flags: Self::affine_flags(gamma, beta),
            eps,
            _p: [0.0; 3],
        };
        let bufs = [
            (1, &x.buf),
            (2, &mean.buf),
            (3, &var.buf),
            (6, &gamma.unwrap_or(mean).buf),
            (7, &beta.unwrap_or(mean).buf),
            (4, &out.buf),
        ];
        self.norm_kernel(op, params, &bufs, x.shape.len().div_ceil(WG))?;
        Ok(out)
    }

    fn batch_norm_backward(
        &self,
        x: &WgpuTensor,
        mean: &WgpuTensor,
        var: &WgpuTensor,
        gamma: Option<&WgpuTensor>,
        grad_y: &WgpuTensor,
        eps: f32,
        stats: NormStats,
    ) -> Result<BatchNormGrads<WgpuTensor>> {
        let op = "batch_norm_backward";
        self.same_device(op, &[x, mean, var, grad_y])?;
        self.same_device(op, &gamma.into_iter().collect::<Vec<_>>())?;
        let plane = checks::batch_norm(
            op,
            x.shape,
            mean.shape,
            var.shape,
            [gamma.map(|t| t.shape), None],
            eps,
        )?;
        checks::same(op, x.shape, grad_y.shape)?;
        let channels = mean.shape.cols;
        let dx = self.alloc(op, x.shape)?;
        let dgamma = self.alloc(op, Shape::new(1, channels))?;
        let dbeta = self.alloc(op, Shape::new(1, channels))?;
        let batch = match stats {
            NormStats::Batch => BATCH_STATS,
            NormStats::Fixed => 0,
        };
        let params = NormParams {
            rows: x.shape.rows as u32,
            channels: channels as u32,
            plane: plane as u32,
            flags: Self::affine_flags(gamma, None) | batch,
            eps,
            _p: [0.0; 3],
        };
        let bufs = [
            (1, &x.buf),
            (2, &mean.buf),
            (3, &var.buf),
            (6, &gamma.unwrap_or(mean).buf),
            (8, &grad_y.buf),
            (4, &dx.buf),
            (5, &dgamma.buf),
            (9, &dbeta.buf),
        ];
        self.norm_kernel(op, params, &bufs, channels)?;
        Ok(BatchNormGrads {
            x: dx,
            gamma: dgamma,
            beta: dbeta,
        })
    }

    fn mul(&self, a: &WgpuTensor, b: &WgpuTensor) -> Result<WgpuTensor> {
        self.same_device("mul", &[a, b])?;
        checks::same("mul", a.shape, b.shape)?;
        self.ew("mul", a, Some(b), None, 0, 0.0)
    }
}
