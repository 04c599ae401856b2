"""MSN for spandrel, the model loader of ComfyUI, chaiNNer and InvokeAI.

    import msn_deploy.msn.spandrel  # registers MSN in spandrel's main registry
    import spandrel
    model = spandrel.ModelLoader().load_from_file("team28_MSN.pth")  # an ImageModelDescriptor

The descriptor holds MSN's inference form: the training form's function, with the statistics
that overflow float16 on ordinary photos kept in float32 islands, so it runs in half precision
(`supports_half=True`); bfloat16 is not offered (not measured). Detection is by the keys only
MSN's checkpoints have; the weights load strict, as everywhere in msn-deploy.
"""

from __future__ import annotations

from spandrel import MAIN_REGISTRY, Architecture, ArchSupport, ImageModelDescriptor, SizeRequirements, StateDict

from msn_deploy.msn.arch import MSN
from msn_deploy.msn.checkpoint import state_dict_mismatches
from msn_deploy.msn.config import CheckpointError, MSNConfig
from msn_deploy.msn.inference import MSNInference, to_inference_form
from msn_deploy.msn.validation import MIN_INPUT_SIZE

ARCH_ID = "MSN"
# Keys of MSN's own modules (strip convs with pw/dw1/dw2, ESA's max branches, CCA's squeeze), which
# RFDN-family networks with the same outer names (fea_conv, B1.c1_d, ...) do not have.
MSN_KEYS = ("fea_conv.weight", "B1.c1_r.dw1.weight", "B1.esa.body.0.conv_max_0.dw2.weight",
            "B1.cca.body.2.conv_du.0.weight", "c2.dw2.weight", "upsampler.upsampleOneStep.0.weight")


def is_msn(state_dict: StateDict) -> bool:
    return all(key in state_dict for key in MSN_KEYS)


class MSNArch(Architecture[MSNInference]):
    def __init__(self) -> None:
        super().__init__(id=ARCH_ID, name="MSN", detect=is_msn)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[MSNInference]:
        config = MSNConfig.from_state_dict(state_dict)
        model = MSN(config)
        problems = state_dict_mismatches(model.state_dict(), state_dict)
        if problems:
            raise CheckpointError(f"this state dict does not match MSN {config}: " + "; ".join(problems))
        model.load_state_dict(state_dict, strict=True)
        inference = to_inference_form(model.eval())
        return ImageModelDescriptor(
            inference, inference.state_dict(), architecture=self, purpose="SR",
            tags=[f"{config.num_feat}nf", f"{config.num_block}nb"],
            supports_half=True, supports_bfloat16=False, scale=config.upscale,
            input_channels=config.in_channels, output_channels=config.out_channels,
            size_requirements=SizeRequirements(minimum=MIN_INPUT_SIZE),
        )


if ARCH_ID not in MAIN_REGISTRY:  # a spandrel that knows MSN itself keeps its own
    MAIN_REGISTRY.add(ArchSupport.from_architecture(MSNArch()))
