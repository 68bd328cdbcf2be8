"""PyTorch versions of t2i's reference models, one module per model, shared by the benchmark
twins (bench/torch_*.py) and the scripts that write the C tests' reference data
(tests/ref/gen_*_ref.py), so that both always describe the same network.

  dcgan     DCGAN-28 generator and discriminator (B1, gan/)
  dalle     DALL-E-style image-token transformer (B2, dalle_tok/dalle.h)
  clip      CLIP, OpenAI architecture and names (B3, clip_rerank/)
  srresnet  SRResNet-lite super-resolution generator (B4, gan/sr.h)
  vq        VQ image tokenizer: encoder, EMA codebook, decoder (B5, dalle_tok/vq.h)

Each module defaults to its benchmark's sizes; the test references pass smaller ones.
Layers are created in the order of the C network so that PyTorch's default initialisation
draws the same random numbers for the same seed, and the C names of the parameters are
either the state_dict names or given by a helper of the module.

Import it by putting tests/ref on sys.path (the scripts do so relative to their own file):
    sys.path.insert(0, os.path.join(ROOT, "tests", "ref")); from models.vq import VQ
"""
