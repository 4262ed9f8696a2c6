package main

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/cluster"
)

// clusterRoutes serve the cluster's views and the node Kill Switch
// across the cluster (resilientctl nodes, isolate --node NAME, release
// --node NAME); outside cluster mode they answer that it is off.
func (d *daemon) clusterRoutes(s *api.Server) {
	mesh := func(w http.ResponseWriter) *cluster.Mesh {
		if d.cluster == nil || d.cluster.mesh == nil {
			api.WriteError(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: "this daemon is not in cluster mode (no cluster.etcd.endpoints in its config)"})
			return nil
		}
		return d.cluster.mesh
	}
	s.Handle("GET /v1/cluster/nodes", func(w http.ResponseWriter, r *http.Request) {
		m := mesh(w)
		if m == nil {
			return
		}
		v, err := m.View(r.Context())
		if err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, v)
	})
	// The --cluster views: each node's own view, asked of every node
	// over the mesh.
	gather := func(w http.ResponseWriter, r *http.Request, path string) {
		if m := mesh(w); m != nil {
			if q := r.URL.RawQuery; q != "" {
				path += "?" + q
			}
			api.WriteJSON(w, http.StatusOK, map[string]any{"node": d.cluster.node.Name(), "nodes": m.Gather(r.Context(), path)})
		}
	}
	s.Handle("GET /v1/cluster/status", func(w http.ResponseWriter, r *http.Request) { gather(w, r, "/v1/status") })
	s.Handle("GET /v1/cluster/sessions", func(w http.ResponseWriter, r *http.Request) { gather(w, r, "/v1/sessions") })
	s.Handle("GET /v1/cluster/pools/{pool}/ring", func(w http.ResponseWriter, r *http.Request) {
		gather(w, r, "/v1/pools/"+url.PathEscape(r.PathValue("pool"))+"/ring")
	})
	s.Handle("POST /v1/cluster/nodes/{node}/isolate", func(w http.ResponseWriter, r *http.Request) {
		var req IsolateRequest
		if r.ContentLength > 0 && !api.DecodeBody(w, r, &req) {
			return
		}
		if req.Reason == "" {
			req.Reason = "isolated by operator"
		}
		if m := mesh(w); m != nil {
			node := r.PathValue("node")
			writeClusterResult(w, d.cluster.node.Isolate(r.Context(), node, req.Reason), map[string]any{"node": node, "isolated": true})
		}
	})
	s.Handle("POST /v1/cluster/nodes/{node}/release", func(w http.ResponseWriter, r *http.Request) {
		if m := mesh(w); m != nil {
			node := r.PathValue("node")
			writeClusterResult(w, d.cluster.node.Release(r.Context(), node), map[string]any{"node": node, "released": true})
		}
	})
}

func writeClusterResult(w http.ResponseWriter, err error, ok map[string]any) {
	switch {
	case errors.Is(err, cluster.ErrUnknownNode):
		api.WriteError(w, &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: err.Error()})
	case err != nil:
		api.WriteError(w, err)
	default:
		api.WriteJSON(w, http.StatusOK, ok)
	}
}
