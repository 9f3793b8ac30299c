// How long OpenMP's idle threads spin before they sleep, set before the OpenMP runtime starts.
#pragma once

namespace saelab {

/// OpenMP's idle threads spin before they sleep: 300,000 polls by default in GNU libgomp (LibTorch's
/// and OpenBLAS's runtime), about a millisecond, at every barrier. On a machine whose cores another process also
/// uses, a descheduled thread keeps the others spinning that long at each of the hundreds of
/// barriers of a step. libgomp reads the bound only when it loads, so before anything else main()
/// calls this: it sets GOMP_SPINCOUNT (SAELAB_SPIN_COUNT, default 10000 polls) and executes the
/// program again with it — unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set already (the user's
/// choice stands). Returns only when nothing was to be done or the exec failed.
void bound_openmp_spinning(char** argv);

}  // namespace saelab
