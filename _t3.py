import numpy as np, ml_dtypes, time
import examples.attention as att
rng=np.random.default_rng(0)
n,hq,hkv,d=130,4,2,64
q=rng.standard_normal((n,hq,d)); k=rng.standard_normal((n,hkv,d)); v=rng.standard_normal((n,hkv,d))
ref=att.dense_attention_reference(q,k,v)
for dt in (np.float32, np.float16, ml_dtypes.bfloat16):
    t=time.time()
    o=att.dense_attention(q.astype(dt),k.astype(dt),v.astype(dt))
    print(dt, o.dtype, np.abs(o.astype(np.float64)-ref).max()/np.abs(ref).max(), time.time()-t)
