#include "ops/moe.h"

void ops_moe_split_experts(const ops_matrix *whole, int32_t n_experts, ops_matrix *experts)
{
    int64_t rows = whole->rows / n_experts;
    for (int32_t e = 0; e < n_experts; e++) {
        experts[e] = *whole;
        experts[e].rows = rows;
        experts[e].packed = NULL;
        experts[e].data = (const unsigned char *)whole->data + (size_t)e * (size_t)rows * whole->row_bytes;
    }
}
