#ifndef WHOLECARE_CLIBPQ_SHIM_H
#define WHOLECARE_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#ifdef __linux__
// The Postgres client waits for its sockets with epoll (see SocketReadiness.swift).
#include <sys/epoll.h>
#endif
#endif
