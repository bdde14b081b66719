/// Errors from the identity stage.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid identity config: {}", .0.join("; "))]
    Config(Vec<String>),

    #[error("embedding has {got} values, the index holds {expected}-d vectors: every sighting must come from the same embedder")]
    Dimension { expected: usize, got: usize },

    #[error("embedding is not a unit vector (norm {norm}): L2-normalise it before indexing")]
    NotNormalised { norm: f32 },
}
