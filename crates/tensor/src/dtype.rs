//! Element types a device tensor can hold: plain floats and integers, and GGUF's block
//! formats kept as blocks (a matrix `[N, K]` stored as `N` rows of `K / block_size` blocks,
//! the bytes exactly as ggml lays them out; [`crate::quant`] documents each format and holds
//! the reference dequantizer).

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)] // ggml's names, as users see them in GGUF files
pub enum DType {
    F32,
    F16,
    BF16,
    /// Token ids, positions, slot mappings, block tables, sequence lengths.
    U32,
    /// 32 elements in 34 bytes: `d: f16, q: [i8; 32]`.
    Q8_0,
    /// 32 elements in 18 bytes: `d: f16, qs: [u8; 16]` (4-bit, offset 8).
    Q4_0,
    /// 32 elements in 20 bytes: `d: f16, m: f16, qs: [u8; 16]`.
    Q4_1,
    /// 32 elements in 22 bytes: `d: f16, qh: u32, qs: [u8; 16]` (5-bit, offset 16).
    Q5_0,
    /// 32 elements in 24 bytes: `d: f16, m: f16, qh: u32, qs: [u8; 16]`.
    Q5_1,
    /// 256 elements in 144 bytes: a K-quant super-block of eight 4-bit sub-blocks.
    Q4_K,
    /// 256 elements in 176 bytes: as Q4_K with a fifth bit per element.
    Q5_K,
    /// 256 elements in 210 bytes: sixteen 6-bit sub-blocks with i8 scales.
    Q6_K,
}

impl DType {
    /// Every GGUF block format a tensor can keep, in ggml id order.
    pub const BLOCK_TYPES: &'static [DType] = &[
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ];

    /// Bytes per element of a plain (non-block) type.
    #[track_caller]
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
            q => panic!("{q} is a block format: use storage_bytes, not size_in_bytes"),
        }
    }

    /// A plain float type (f32, f16, bf16): what activations, caches and dense weights are.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// Whether elements are stored in GGUF blocks (quantized).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Elements per block: 1 for plain types, 32 or 256 for GGUF block formats.
    pub fn block_size(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 | DType::U32 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => 32,
            DType::Q4_K | DType::Q5_K | DType::Q6_K => 256,
        }
    }

    /// Bytes per block (the element size for plain types).
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q5_1 => 24,
            DType::Q4_K => 144,
            DType::Q5_K => 176,
            DType::Q6_K => 210,
        }
    }

    /// Bytes taken by `numel` elements, or `None` when `numel` is not a whole number of
    /// blocks.
    pub fn storage_bytes(self, numel: usize) -> Option<usize> {
        numel
            .is_multiple_of(self.block_size())
            .then(|| numel / self.block_size() * self.block_bytes())
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::U32 => "u32",
            DType::Q8_0 => "Q8_0",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q4_K => "Q4_K",
            DType::Q5_K => "Q5_K",
            DType::Q6_K => "Q6_K",
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::DType;

    #[test]
    fn block_geometry_is_ggml_s() {
        let geometry: Vec<(DType, usize, usize)> = DType::BLOCK_TYPES
            .iter()
            .map(|&d| (d, d.block_size(), d.block_bytes()))
            .collect();
        assert_eq!(
            geometry,
            [
                (DType::Q4_0, 32, 18),
                (DType::Q4_1, 32, 20),
                (DType::Q5_0, 32, 22),
                (DType::Q5_1, 32, 24),
                (DType::Q8_0, 32, 34),
                (DType::Q4_K, 256, 144),
                (DType::Q5_K, 256, 176),
                (DType::Q6_K, 256, 210),
            ]
        );
        assert!(DType::BLOCK_TYPES.iter().all(|d| d.is_quantized()));
        assert!(!DType::F16.is_quantized());
        assert_eq!(DType::Q4_K.storage_bytes(512), Some(288));
        assert_eq!(DType::Q8_0.storage_bytes(33), None);
        assert_eq!(DType::BF16.storage_bytes(3), Some(6));
    }
}
