//! Hook names: where in the forward pass a quantity lives.
//!
//! Names are TransformerLens's, verbatim, so that `transcoder config.yaml` files written for
//! circuit-tracer (`feature_input_hook: ln2.hook_normalized`, ...) resolve without translation.
//! Shapes below are those of adag's activation cache, batch first.

use std::fmt;
use std::str::FromStr;

/// A site inside one transformer block. Shapes are `[batch, pos, ...]`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Site {
    /// `hook_resid_pre` `[batch, pos, d_model]`: the residual stream entering the block.
    ResidPre,
    /// `ln1.hook_scale` `[batch, pos, 1]`: sqrt(mean(x²)+eps) of the attention input norm.
    Ln1Scale,
    /// `ln1.hook_normalized` `[batch, pos, d_model]`: `x / scale`, before the norm weight
    /// (TransformerLens's definition).
    Ln1Normalized,
    /// `attn.hook_pattern` `[batch, head, query_pos, key_pos]`: attention probabilities.
    AttnPattern,
    /// `ln1_post.hook_scale` `[batch, pos, 1]`: Gemma-2's norm on the attention output.
    Ln1PostScale,
    /// `hook_attn_out` `[batch, pos, d_model]`: what attention adds to the residual stream
    /// (after Gemma-2's post-attention norm).
    AttnOut,
    /// `hook_resid_mid` `[batch, pos, d_model]`: the residual stream after attention.
    ResidMid,
    /// `ln2.hook_scale` `[batch, pos, 1]`: the MLP input norm's denominator.
    Ln2Scale,
    /// `ln2.hook_normalized` `[batch, pos, d_model]`: `x / scale`, before the norm weight
    /// (TransformerLens's definition; GemmaScope transcoders read here).
    Ln2Normalized,
    /// `mlp.hook_in` `[batch, pos, d_model]`: the MLP's input, after the norm weight
    /// (circuit-tracer's name; Llama and Qwen3 transcoders read here).
    MlpIn,
    /// `mlp.hook_pre` `[batch, pos, d_mlp]`: gate pre-activation, `W_gate x`.
    MlpPre,
    /// `mlp.hook_pre_linear` `[batch, pos, d_mlp]`: up projection, `W_up x`.
    MlpPreLinear,
    /// `mlp.hook_post` `[batch, pos, d_mlp]`: neuron activations act(gate)·up, input of `down_proj`.
    MlpPost,
    /// `mlp.hook_out` `[batch, pos, d_model]`: the MLP's own output, `W_down · post`, before
    /// Gemma-2's post-feedforward norm.
    MlpOut,
    /// `ln2_post.hook_scale` `[batch, pos, 1]`: Gemma-2's norm on the MLP output.
    Ln2PostScale,
    /// `hook_mlp_out` `[batch, pos, d_model]`: what the MLP adds to the residual stream.
    HookMlpOut,
    /// `hook_resid_post` `[batch, pos, d_model]`: the residual stream leaving the block.
    ResidPost,
}

impl Site {
    /// Every site, in forward order.
    pub const ALL: [Site; 17] = [
        Site::ResidPre,
        Site::Ln1Scale,
        Site::Ln1Normalized,
        Site::AttnPattern,
        Site::Ln1PostScale,
        Site::AttnOut,
        Site::ResidMid,
        Site::Ln2Scale,
        Site::Ln2Normalized,
        Site::MlpIn,
        Site::MlpPre,
        Site::MlpPreLinear,
        Site::MlpPost,
        Site::MlpOut,
        Site::Ln2PostScale,
        Site::HookMlpOut,
        Site::ResidPost,
    ];

    /// The name after `blocks.{layer}.`.
    pub fn as_str(self) -> &'static str {
        match self {
            Site::ResidPre => "hook_resid_pre",
            Site::Ln1Scale => "ln1.hook_scale",
            Site::Ln1Normalized => "ln1.hook_normalized",
            Site::AttnPattern => "attn.hook_pattern",
            Site::Ln1PostScale => "ln1_post.hook_scale",
            Site::AttnOut => "hook_attn_out",
            Site::ResidMid => "hook_resid_mid",
            Site::Ln2Scale => "ln2.hook_scale",
            Site::Ln2Normalized => "ln2.hook_normalized",
            Site::MlpIn => "mlp.hook_in",
            Site::MlpPre => "mlp.hook_pre",
            Site::MlpPreLinear => "mlp.hook_pre_linear",
            Site::MlpPost => "mlp.hook_post",
            Site::MlpOut => "mlp.hook_out",
            Site::Ln2PostScale => "ln2_post.hook_scale",
            Site::HookMlpOut => "hook_mlp_out",
            Site::ResidPost => "hook_resid_post",
        }
    }

    /// Parses a block-relative name.
    pub fn parse(s: &str) -> Option<Site> {
        Site::ALL.into_iter().find(|site| site.as_str() == s)
    }
}

/// A full hook path.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum HookName {
    /// `hook_embed` `[batch, pos, d_model]`: token embeddings, including Gemma-2's sqrt(d_model)
    /// factor (TransformerLens folds it into `W_E`).
    Embed,
    /// `blocks.{layer}.{site}`.
    Block(usize, Site),
    /// `ln_final.hook_scale` `[batch, pos, 1]`: the final norm's denominator.
    LnFinalScale,
    /// `ln_final.hook_normalized` `[batch, pos, d_model]`: `x / scale` before the final norm's
    /// weight.
    LnFinalNormalized,
}

impl fmt::Display for HookName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookName::Embed => f.write_str("hook_embed"),
            HookName::Block(l, site) => write!(f, "blocks.{l}.{}", site.as_str()),
            HookName::LnFinalScale => f.write_str("ln_final.hook_scale"),
            HookName::LnFinalNormalized => f.write_str("ln_final.hook_normalized"),
        }
    }
}

/// A string that is not a hook name adag knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown hook name `{0}` (expected e.g. `hook_embed`, `blocks.0.ln2.hook_normalized`, `ln_final.hook_scale`)")]
pub struct ParseHookError(pub String);

impl FromStr for HookName {
    type Err = ParseHookError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseHookError(s.to_string());
        match s {
            "hook_embed" => return Ok(HookName::Embed),
            "ln_final.hook_scale" => return Ok(HookName::LnFinalScale),
            "ln_final.hook_normalized" => return Ok(HookName::LnFinalNormalized),
            _ => {}
        }
        let rest = s.strip_prefix("blocks.").ok_or_else(err)?;
        let (layer, site) = rest.split_once('.').ok_or_else(err)?;
        let layer = layer.parse::<usize>().map_err(|_| err())?;
        Site::parse(site)
            .map(|site| HookName::Block(layer, site))
            .ok_or_else(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        let mut names = vec![
            HookName::Embed,
            HookName::LnFinalScale,
            HookName::LnFinalNormalized,
        ];
        names.extend(Site::ALL.iter().map(|&s| HookName::Block(7, s)));
        for name in names {
            assert_eq!(
                name.to_string().parse::<HookName>().unwrap(),
                name,
                "{name}"
            );
        }
    }

    #[test]
    fn circuit_tracer_names_and_errors() {
        assert_eq!(
            "blocks.2.mlp.hook_in".parse::<HookName>().unwrap(),
            HookName::Block(2, Site::MlpIn)
        );
        for bad in [
            "blocks.x.hook_resid_pre",
            "blocks.1",
            "resid_pre",
            "blocks.1.hook_nothing",
            "",
        ] {
            let e = bad.parse::<HookName>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
