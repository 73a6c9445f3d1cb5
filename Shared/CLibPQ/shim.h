#ifndef WHOLECARE_CLIBPQ_SHIM_H
#define WHOLECARE_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
