"""SBSGAN discriminator: StarGAN's PatchGAN critic with a domain-classification head (SPEC §2).

    image [B,H,W,3] -> L x (4x4/2 conv, LeakyReLU 0.01; widths F, 2F, 4F, ...; no norm)
      -> patch head:  3x3 conv -> 1            : WGAN critic scores [B, H/2^L, W/2^L, 1]
      -> domain head: (H/2^L, W/2^L) valid conv -> K : domain logits [B, K]
"""

import keras


@keras.saving.register_keras_serializable(package="bgshift_tf")
class Discriminator(keras.Model):
    """PatchGAN critic + domain classifier.

    Args:
        num_domains: K, the number of domain logits.
        image_size: (H, W); both must be divisible by 2**num_layers.
        base_filters: width of the first conv (64 in the paper), doubled by each following conv.
        num_layers: L, stride-2 convs (6 in the paper: 256x128 -> 4x2).
        name: model name.

    `call(images)` with images float32 [B,H,W,3] in [-1,1] returns
    (patch_logits float32 [B, H/2^L, W/2^L, 1], domain_logits float32 [B, K]).
    """

    def __init__(self, num_domains=3, image_size=(256, 128), base_filters=64, num_layers=6,
                 name="discriminator", **kwargs):
        super().__init__(name=name, **kwargs)
        image_size = tuple(int(s) for s in image_size)
        if num_domains < 1 or base_filters < 1 or num_layers < 1:
            raise ValueError(
                f"`num_domains`, `base_filters` and `num_layers` must be >= 1. Received: "
                f"num_domains={num_domains}, base_filters={base_filters}, num_layers={num_layers}"
            )
        scale = 2**num_layers
        if len(image_size) != 2 or any(s < scale or s % scale for s in image_size):
            raise ValueError(
                f"`image_size` must be (H, W) with H and W multiples of 2**num_layers={scale}. "
                f"Received: image_size={image_size}, num_layers={num_layers}"
            )
        # === Config ===
        self.num_domains = int(num_domains)
        self.image_size = image_size
        self.base_filters = int(base_filters)
        self.num_layers = int(num_layers)

        # === Functional Model ===
        inputs = keras.Input((*image_size, 3), name="images")
        x = inputs
        for i in range(num_layers):
            x = keras.layers.Conv2D(
                base_filters * 2**i, 4, strides=2, padding="same", name=f"down{i + 1}_conv"
            )(x)
            x = keras.layers.LeakyReLU(negative_slope=0.01, name=f"down{i + 1}_lrelu")(x)
        # The heads compute in float32 under any precision policy: the WGAN critic, its gradient penalty
        # and the domain softmax read float32 logits (the heads are < 1% of D's FLOPs).
        patch_logits = keras.layers.Conv2D(
            1, 3, padding="same", use_bias=False, dtype="float32", name="patch_head"
        )(x)
        domain_map = keras.layers.Conv2D(
            num_domains, (image_size[0] // scale, image_size[1] // scale), padding="valid",
            use_bias=False, dtype="float32", name="domain_head",
        )(x)
        domain_logits = keras.layers.Flatten(dtype="float32", name="domain_logits")(domain_map)
        self.network = keras.Model(inputs, [patch_logits, domain_logits], name="patch_gan")
        self.built = True

    def call(self, images):
        patch_logits, domain_logits = self.network(images)
        return patch_logits, domain_logits

    def get_config(self):
        return {
            "num_domains": self.num_domains,
            "image_size": list(self.image_size),
            "base_filters": self.base_filters,
            "num_layers": self.num_layers,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
