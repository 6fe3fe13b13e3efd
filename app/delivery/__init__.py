"""Delivery: float audio chunks -> conditioned PCM -> an encoded format -> a framing (raw, SSE).

    AudioSource (synthesis) ──float32 chunks──▶ Conditioner (fade-in, speed, limiter)
        ──int16 PCM──▶ Encoder (pcm, wav, mp3, opus, aac, flac) ──bytes──▶ framing
                                                         (raw HTTP body, SSE events, a sink)

One conditioner and one encoder per response, fed by the same chunks the stream produces,
so seams stay seamless and the first encoded bytes leave with the first chunk.
"""
