// The decode-step executor (graph.h): the recorded kernel calls, one after another.
#include "graph.h"

namespace qllm {

void runGraph(Runtime& rt, const Graph& g, int64_t pos) {
  for (const GraphOp& op : g.ops) {
    const GraphPtr* p = op.p;
    const int64_t* i = op.i;
    switch (op.kind) {
      case GraphOpKind::kMatmulPacked:
        matmulPacked(rt, p[0].at<const float>(pos), *op.w, i[0], p[1].at<const float>(pos), p[2].at<float>(pos), op.f32Acts);
        break;
      case GraphOpKind::kMatmulParts: {
        const float* bias[kMaxParts];
        float* ys[kMaxParts];
        for (int q = 0; q < i[1]; ++q) {
          bias[q] = p[1 + q].at<const float>(pos);
          ys[q] = p[1 + kMaxParts + q].at<float>(pos);
        }
        matmulPackedParts(rt, p[0].at<const float>(pos), *op.w, i[0], bias, ys, op.f32Acts);
        break;
      }
      case GraphOpKind::kAttention:
      case GraphOpKind::kAttentionF16: {
        const AttentionShape s{i[0], pos + i[1], i[2], i[3], i[4]};
        if (op.kind == GraphOpKind::kAttention) {
          attention(rt, p[0].at<const float>(pos), p[1].at<const float>(pos), p[2].at<const float>(pos), s, p[3].at<float>(pos));
        } else {
          attentionF16(rt, p[0].at<const float>(pos), p[1].at<const uint16_t>(pos), p[2].at<const uint16_t>(pos), s, p[3].at<float>(pos));
        }
        break;
      }
      case GraphOpKind::kSwiglu: swiglu(rt, p[0].at<float>(pos), p[1].at<const float>(pos), i[0]); break;
      case GraphOpKind::kRmsNorm: rmsNorm(rt, p[0].at<const float>(pos), p[1].at<const float>(pos), i[0], i[1], op.eps, p[2].at<float>(pos)); break;
      case GraphOpKind::kRope: rope(rt, p[0].at<float>(pos), i[0], i[1], i[2], pos + i[3], p[1].at<const float>(pos), p[2].at<const float>(pos)); break;
      case GraphOpKind::kAdd: add(rt, p[0].at<const float>(pos), p[1].at<const float>(pos), p[2].at<float>(pos), i[0]); break;
      case GraphOpKind::kToF16: toF16(rt, p[0].at<const float>(pos), p[1].at<uint16_t>(pos), i[0]); break;
    }
  }
}

}  // namespace qllm
