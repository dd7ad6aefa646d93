// Error concealment bookkeeping between slice segments of a damaged picture.
#include "hevc/slice_data.h"
#include "hevc/slice_decoder.h"

namespace bitsr {

void abandon_slice_data(PictureState& st) {
  constexpr int32_t kAbandoned = -2;  // matches no SliceAddrRs, so availability checks fail
  for (size_t rs = 0; rs < st.ctb_slice_addr.size(); ++rs)
    if (st.ctb_slice_addr[rs] >= 0 && !st.pic.ctb_ok[rs]) st.ctb_slice_addr[rs] = kAbandoned;
  st.impl->ds_valid = false;
}

}  // namespace bitsr
