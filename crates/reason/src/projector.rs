//! A synthetic vision projector: a tiny LLaVA-style CLIP tower with seeded
//! random weights, written as a GGUF file that llama.cpp's `mtmd` loads.
//!
//! No vision-language weights can be downloaded where streamer's tests run,
//! so this is how the image path (bitmap → CLIP encoder → projector → text
//! model) is exercised end to end with a real text model. The answers it
//! leads to are meaningless; everything else about the path is real.
//! Production users configure a real projector (`mmproj`) instead.

use std::io::{self, Write};
use std::path::Path;

/// Shape of the generated vision tower.
#[derive(Clone, Copy, Debug)]
pub struct SyntheticProjector {
    /// Output width: the text model's embedding width (896 for Qwen2.5-0.5B).
    pub text_width: u32,
    pub image_size: u32,
    pub patch_size: u32,
    pub width: u32,
    pub ffn_width: u32,
    pub heads: u32,
    /// llama.cpp runs `blocks - 1` of them (LLaVA uses the penultimate layer).
    pub blocks: u32,
    /// Standard deviation of the weights. At 0.2 the image visibly reaches
    /// the text model; near 0.02 the embeddings are close to zero.
    pub weight_scale: f32,
    pub seed: u64,
}

impl SyntheticProjector {
    /// A 56 px, 16-patch tower for a text model of embedding width `text_width`.
    pub fn for_text_width(text_width: u32) -> Self {
        Self {
            text_width,
            image_size: 56,
            patch_size: 14,
            width: 64,
            ffn_width: 128,
            heads: 2,
            blocks: 2,
            weight_scale: 0.2,
            seed: 0x5eed,
        }
    }

    /// Image tokens each picture becomes.
    pub fn image_tokens(&self) -> u32 {
        (self.image_size / self.patch_size).pow(2)
    }

    /// Writes the projector GGUF to `path`.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let mut gguf = GgufWriter::default();
        gguf.string("general.architecture", "clip");
        gguf.string(
            "general.name",
            "streamer synthetic projector (random weights)",
        );
        gguf.boolean("clip.has_vision_encoder", true);
        gguf.boolean("clip.use_gelu", true);
        gguf.string("clip.projector_type", "mlp");
        gguf.u32("clip.vision.image_size", self.image_size);
        gguf.u32("clip.vision.patch_size", self.patch_size);
        gguf.u32("clip.vision.embedding_length", self.width);
        gguf.u32("clip.vision.feed_forward_length", self.ffn_width);
        gguf.u32("clip.vision.block_count", self.blocks);
        gguf.u32("clip.vision.projection_dim", self.text_width);
        gguf.u32("clip.vision.attention.head_count", self.heads);
        gguf.f32("clip.vision.attention.layer_norm_epsilon", 1e-5);
        gguf.f32_array(
            "clip.vision.image_mean",
            &[0.481_454_66, 0.457_827_5, 0.408_210_73],
        );
        gguf.f32_array(
            "clip.vision.image_std",
            &[0.268_629_54, 0.261_302_6, 0.275_777_1],
        );

        let (e, f, p, d) = (
            self.width as u64,
            self.ffn_width as u64,
            self.patch_size as u64,
            self.text_width as u64,
        );
        let positions = self.image_tokens() as u64;
        let mut rng = SplitMix(self.seed);
        let s = self.weight_scale;
        gguf.matrix("v.patch_embd.weight", &[e, 3, p, p], s, &mut rng);
        gguf.vector("v.patch_embd.bias", e, 0.0, 0.0, &mut rng);
        gguf.matrix("v.position_embd.weight", &[positions, e], s, &mut rng);
        gguf.vector("v.pre_ln.weight", e, 1.0, 0.0, &mut rng);
        gguf.vector("v.pre_ln.bias", e, 0.0, 0.0, &mut rng);
        for b in 0..self.blocks {
            for part in ["q", "k", "v", "out"] {
                gguf.matrix(
                    &format!("v.blk.{b}.attn_{part}.weight"),
                    &[e, e],
                    s,
                    &mut rng,
                );
                gguf.vector(&format!("v.blk.{b}.attn_{part}.bias"), e, 0.0, s, &mut rng);
            }
            for ln in ["ln1", "ln2"] {
                gguf.vector(&format!("v.blk.{b}.{ln}.weight"), e, 1.0, 0.0, &mut rng);
                gguf.vector(&format!("v.blk.{b}.{ln}.bias"), e, 0.0, 0.0, &mut rng);
            }
            gguf.matrix(&format!("v.blk.{b}.ffn_up.weight"), &[f, e], s, &mut rng);
            gguf.vector(&format!("v.blk.{b}.ffn_up.bias"), f, 0.0, s, &mut rng);
            gguf.matrix(&format!("v.blk.{b}.ffn_down.weight"), &[e, f], s, &mut rng);
            gguf.vector(&format!("v.blk.{b}.ffn_down.bias"), e, 0.0, s, &mut rng);
        }
        gguf.matrix("mm.0.weight", &[d, e], s, &mut rng);
        gguf.vector("mm.0.bias", d, 0.0, s, &mut rng);
        gguf.matrix("mm.2.weight", &[d, d], s, &mut rng);
        gguf.vector("mm.2.bias", d, 0.0, s, &mut rng);

        let mut file = io::BufWriter::new(std::fs::File::create(path)?);
        gguf.finish(&mut file)?;
        file.flush()
    }
}

/// GGUF metadata value types used here.
const T_U32: u32 = 4;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
/// ggml tensor types used here.
const GGML_F32: u32 = 0;
const GGML_F16: u32 = 1;
const ALIGNMENT: usize = 32;

/// Collects metadata and tensors, then writes a GGUF v3 file.
#[derive(Default)]
struct GgufWriter {
    metadata: Vec<u8>,
    kv_count: u64,
    infos: Vec<u8>,
    tensor_count: u64,
    data: Vec<u8>,
}

impl GgufWriter {
    fn key(&mut self, key: &str, ty: u32) {
        put_str(&mut self.metadata, key);
        self.metadata.extend(ty.to_le_bytes());
        self.kv_count += 1;
    }
    fn string(&mut self, key: &str, value: &str) {
        self.key(key, T_STRING);
        put_str(&mut self.metadata, value);
    }
    fn boolean(&mut self, key: &str, value: bool) {
        self.key(key, T_BOOL);
        self.metadata.push(value as u8);
    }
    fn u32(&mut self, key: &str, value: u32) {
        self.key(key, T_U32);
        self.metadata.extend(value.to_le_bytes());
    }
    fn f32(&mut self, key: &str, value: f32) {
        self.key(key, T_F32);
        self.metadata.extend(value.to_le_bytes());
    }
    fn f32_array(&mut self, key: &str, values: &[f32]) {
        self.key(key, T_ARRAY);
        self.metadata.extend(T_F32.to_le_bytes());
        self.metadata.extend((values.len() as u64).to_le_bytes());
        for v in values {
            self.metadata.extend(v.to_le_bytes());
        }
    }

    /// `shape` in PyTorch order (slowest dimension first); GGUF stores the
    /// reverse.
    fn tensor(&mut self, name: &str, shape: &[u64], ty: u32, bytes: &[u8]) {
        while !self.data.len().is_multiple_of(ALIGNMENT) {
            self.data.push(0);
        }
        put_str(&mut self.infos, name);
        self.infos.extend((shape.len() as u32).to_le_bytes());
        for dim in shape.iter().rev() {
            self.infos.extend(dim.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend_from_slice(bytes);
        self.tensor_count += 1;
    }

    /// A random F16 matrix with standard deviation `scale`.
    fn matrix(&mut self, name: &str, shape: &[u64], scale: f32, rng: &mut SplitMix) {
        let n: u64 = shape.iter().product();
        let bytes: Vec<u8> = (0..n)
            .flat_map(|_| f32_to_f16(rng.normal() * scale).to_le_bytes())
            .collect();
        self.tensor(name, shape, GGML_F16, &bytes);
    }

    /// An F32 vector of `base` plus noise of standard deviation `scale`.
    fn vector(&mut self, name: &str, len: u64, base: f32, scale: f32, rng: &mut SplitMix) {
        let bytes: Vec<u8> = (0..len)
            .flat_map(|_| (base + rng.normal() * scale).to_le_bytes())
            .collect();
        self.tensor(name, &[len], GGML_F32, &bytes);
    }

    fn finish(self, out: &mut impl Write) -> io::Result<()> {
        let mut head = Vec::new();
        head.extend(b"GGUF");
        head.extend(3u32.to_le_bytes());
        head.extend(self.tensor_count.to_le_bytes());
        head.extend(self.kv_count.to_le_bytes());
        head.extend(&self.metadata);
        head.extend(&self.infos);
        while !head.len().is_multiple_of(ALIGNMENT) {
            head.push(0);
        }
        out.write_all(&head)?;
        out.write_all(&self.data)
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend((s.len() as u64).to_le_bytes());
    buf.extend(s.as_bytes());
}

/// IEEE half precision, round to nearest even; enough for weights of
/// moderate size (overflow saturates to infinity, tiny values flush to 0).
fn f32_to_f16(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mantissa = bits & 0x7f_ffff;
    if exp <= 0 {
        return sign;
    }
    if exp >= 31 {
        return sign | 0x7c00;
    }
    let mut half = ((exp as u32) << 10) | (mantissa >> 13);
    let rest = mantissa & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && half & 1 == 1) {
        half += 1;
    }
    sign | half as u16
}

/// A small deterministic generator (SplitMix64) with Box-Muller normals.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_matches_known_values() {
        assert_eq!(f32_to_f16(0.0), 0);
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(0.5), 0x3800);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(1e6), 0x7c00);
    }

    #[test]
    fn written_file_is_a_gguf_with_every_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mmproj.gguf");
        let spec = SyntheticProjector::for_text_width(576);
        spec.write(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"GGUF");
        let tensors = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        // patch (2) + position + pre_ln (2) + 16 per block + projector (4)
        assert_eq!(tensors, 2 + 1 + 2 + 16 * spec.blocks as u64 + 4);
        assert_eq!(spec.image_tokens(), 16);
    }
}
