//! Launcher of `moe.wgsl`: `moe_route` (one dispatch), and `moe_experts_add` as a fixed
//! sequence of dispatches whose sizes come from shapes only, never from the routing, so
//! nothing is read back: group the slots by expert, the gate/up projection with SiLU·mul
//! (one dispatch per part of the stacked weights), the down projection (likewise), the
//! weighted sum into the residual. Experts with no slots this step exit at once. Expert
//! stacks are f32/f16/bf16 or GGUF blocks (each format's `moe_project` is built with its
//! other pipelines, `Pipelines::quant`); a stack split into parts is split at whole experts.

use ingot_tensor::backend::Result;
use ingot_tensor::moe::MoeRouting;
use ingot_tensor::{BackendError, DType, MoeExperts, MoeRoutes, MoeShared, Op, Shape};

use super::{Pipelines, quant_index, u32_of, weight_index};
use crate::params::MoeParams;
use crate::{T, WgpuBackend};

/// Output columns per `moe_project` workgroup (`PN` in the shader).
const PROJECT_COLS: usize = 64;

pub(crate) fn route(
    be: &WgpuBackend,
    p: &Pipelines,
    logits: &T,
    routing: MoeRouting,
) -> Result<MoeRoutes<WgpuBackend>> {
    let gpu = &be.gpu;
    let (t, e, k) = (logits.dims()[0], logits.dims()[1], routing.top_k);
    let shape = Shape::new([t, k]);
    let ids = be.output_typed(shape.clone(), DType::U32, "moe_route ids")?;
    let weights = be.output(shape, "moe_route weights")?;
    if t == 0 {
        return Ok(MoeRoutes { ids, weights });
    }
    let params = gpu.uniform(&MoeParams {
        tokens: u32_of("tokens", t)?,
        experts: u32_of("experts", e)?,
        top_k: u32_of("top_k", k)?,
        scoring: routing.scoring_code(),
        renormalize: routing.renormalize as u32,
        ..Default::default()
    });
    let (gx, gy) = gpu.grid(t.div_ceil(64) as u64)?;
    gpu.dispatch(
        "moe_route",
        &p.moe_route,
        &[
            (0, &params),
            (2, logits.storage().buffer("moe_route logits")?),
            (3, ids.storage().buffer("moe_route ids")?),
            (4, weights.storage().buffer("moe_route weights")?),
        ],
        (gx, gy, 1),
    )?;
    Ok(MoeRoutes { ids, weights })
}

pub(crate) fn experts_add(
    be: &WgpuBackend,
    p: &Pipelines,
    x: &T,
    routes: &MoeRoutes<WgpuBackend>,
    experts: MoeExperts<'_, WgpuBackend>,
    shared: Option<MoeShared<'_, WgpuBackend>>,
    residual: &mut T,
) -> Result<()> {
    let gpu = &be.gpu;
    let (t, k) = (routes.ids.dims()[0], routes.ids.dims()[1]);
    let gu = experts.gate_up.dims();
    let (e, inner, h) = (gu[0], gu[1] / 2, gu[2]);
    for w in [experts.gate_up, experts.down] {
        if weight_index(w.dtype()).is_none() && quant_index(w.dtype()).is_none() {
            return Err(BackendError::Unsupported {
                op: Op::MoeExperts,
                dtype: w.dtype(),
                backend: "wgpu",
            });
        }
        // The launch binds one part per dispatch as whole experts (`expert_start`).
        let rows: usize = w.storage().parts.iter().map(|p| p.rows).sum();
        if rows != w.dims()[0] {
            return Err(BackendError::Device(format!(
                "moe_experts_add: an expert stack {} whose parts count {rows} rows, not its \
                 {} experts (upload stacks with their three dimensions, [E, N, K])",
                w.shape(),
                w.dims()[0]
            )));
        }
    }
    if t == 0 || h == 0 {
        return Ok(());
    }
    let base = MoeParams {
        tokens: u32_of("tokens", t)?,
        experts: u32_of("experts", e)?,
        top_k: u32_of("top_k", k)?,
        hidden: u32_of("hidden", h)?,
        ..Default::default()
    };
    let ids = routes.ids.storage().buffer("moe ids")?;
    // Slots grouped by expert: offsets [E + 1], then the slot list [T * k].
    let group = be.output_typed(Shape::new([e + 1 + t * k]), DType::U32, "moe group")?;
    let gb = group.storage().buffer("moe group")?;
    gpu.dispatch(
        "moe_group",
        &p.moe_group,
        &[(0, &gpu.uniform(&base)), (3, ids), (5, gb)],
        (1, 1, 1),
    )?;
    let act = be.output(Shape::new([t * k, inner]), "moe act")?; // [T * k, I] by slot
    let out = be.output(Shape::new([t * k, h]), "moe out")?; // [T * k, H] by slot
    let stages = [
        (experts.gate_up, x, &act, h, inner, true),
        (experts.down, &act, &out, inner, h, false),
    ];
    for (w, input, output, k_in, n_out, gated) in stages {
        if n_out == 0 {
            continue;
        }
        let pipeline = match weight_index(w.dtype()) {
            Some(wi) => &p.moe_project[wi],
            None => {
                let qi = quant_index(w.dtype()).expect("checked above");
                &p.quant(gpu, qi)?.moe_project
            }
        };
        let ib = input.storage().buffer("moe projection input")?;
        let ob = output.storage().buffer("moe projection output")?;
        for part in &w.storage().parts {
            let params = gpu.uniform(&MoeParams {
                k_in: u32_of("k", k_in)?,
                n_out: u32_of("n", n_out)?,
                expert_start: u32_of("experts", part.first_row)?,
                expert_count: u32_of("experts", part.rows)?,
                gated: gated as u32,
                ..base
            });
            gpu.dispatch(
                if gated { "moe gate_up" } else { "moe down" },
                pipeline,
                &[(0, &params), (1, &part.buffer), (2, ib), (5, gb), (6, ob)],
                (
                    u32_of("groups", n_out.div_ceil(PROJECT_COLS))?,
                    u32_of("groups", part.rows)?,
                    1,
                ),
            )?;
        }
    }
    let (sb, gateb) = match &shared {
        Some(s) => (
            s.out.storage().buffer("moe shared output")?,
            match s.gate {
                Some(g) => g.storage().buffer("moe shared gate")?,
                None => &gpu.dummy,
            },
        ),
        None => (&gpu.dummy, &gpu.dummy),
    };
    let params = gpu.uniform(&MoeParams {
        has_shared: shared.is_some() as u32,
        shared_gate: shared.as_ref().is_some_and(|s| s.gate.is_some()) as u32,
        ..base
    });
    let (gx, gy) = gpu.grid((t * h).div_ceil(256) as u64)?;
    gpu.dispatch(
        "moe_combine",
        &p.moe_combine,
        &[
            (0, &params),
            (2, out.storage().buffer("moe out")?),
            (3, ids),
            (4, routes.weights.storage().buffer("moe weights")?),
            (7, sb),
            (8, gateb),
            (9, residual.storage().buffer("moe residual")?),
        ],
        (gx, gy, 1),
    )?;
    Ok(())
}
