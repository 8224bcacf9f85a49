"""Ray-cast rendering of a city's facades, ground and sky into raw float images."""

from __future__ import annotations

import numpy as np

from .city import City
from .randomness import hash_unit
from .streets import heading_vector
from .views import Views


# ray-marching distances: fine near the camera, coarser far away (buildings are >= 4 m wide)
_MARCH = np.concatenate([np.arange(0.5, 25.0, 0.5), np.arange(25.0, 60.0, 1.0),
                         np.arange(60.0, 160.0, 2.0)]).astype(np.float32)
_SLOPE_LIMIT = 1000.0  # |slope| bound of the per-column running maximum

# facade materials: rows of the per-building colour table (COLOUR_ROWS)
_WALL, _GLASS, _SIGN, _SHOPFRONT, _ACCENT, _BOARD_A, _BOARD_B = range(7)
# ground materials
_GROUND_RGB = np.array([[0.33, 0.33, 0.35], [0.62, 0.60, 0.56], [0.92, 0.85, 0.45], [0.9, 0.9, 0.9]], dtype=np.float32)
_ROAD, _PAVEMENT, _LANE_MARK, _ZEBRA = 0, 1, 2, 3
_LIT_WINDOW_RGB = np.array([1.0, 0.82, 0.5], dtype=np.float32)


def _facade_colour(city: City, views: Views, view: np.ndarray, building: np.ndarray, s: np.ndarray,
                   z: np.ndarray, normal_azimuth: np.ndarray) -> np.ndarray:
    """Colours ``[P, 3]`` of facade points: building ``[P]``, position along the wall ``s``
    and height ``z`` (m), wall normal azimuth (deg), seen by ``view`` ``[P]``.

    Each point gets a material (wall, glass, shop sign, shop front, accent, board colours)
    whose colour comes from the building's colour table, times a brightness factor (brick
    texture, cornice, glass variation, sun shading)."""
    table = city.facade[building]  # [P, 17], one gather for every facade parameter
    (period, floor, offset, win_w, win_h, ground_floor, height, shop, pilasters, bands, board,
     board_start, board_bottom, board_width, board_height, board_pattern, board_stripes) = table.T
    u = (s - offset) / period
    column = np.floor(u)
    u_frac = u - column
    v = z / floor
    storey = np.floor(v)
    v_frac = v - storey
    upper = (z > ground_floor) & (z < height - 1.2)
    window = upper & (np.abs(u_frac - 0.5) < win_w * 0.5) & (v_frac > 0.3) & (v_frac < 0.3 + win_h)
    in_shop = (shop > 0) & (z < ground_floor)
    shop_front = in_shop & (z > 0.4) & (z < ground_floor - 0.9)
    sign = in_shop & (z >= ground_floor - 0.9) & (z < ground_floor - 0.15)
    bu = (s - board_start) / board_width  # position on the board, [0, 1) x [0, 1) inside it
    bv = (z - board_bottom) / board_height
    on_board = (board > 0) & (bu >= 0) & (bu < 1) & (bv >= 0) & (bv < 1)
    stripe_u, stripe_v = np.floor(bu * board_stripes), np.floor(bv * np.maximum(board_stripes // 2, 1))
    board_b = np.select(
        [board_pattern == 0, board_pattern == 1, board_pattern == 2],
        [stripe_u % 2 == 1, stripe_v % 2 == 1, (stripe_u + stripe_v) % 2 == 1],
        (bu - 0.5) ** 2 + (bv - 0.5) ** 2 < 0.12)
    material = np.full(len(building), _WALL, dtype=np.int64)
    material[upper & (((pilasters > 0) & (u_frac < 0.1)) | ((bands > 0) & (v_frac < 0.12)))] = _ACCENT
    material[window] = _GLASS
    material[sign] = np.where(hash_unit(building[sign], np.floor(s[sign] / 5.0), 3) < 0.5, _SIGN, _BOARD_A)
    material[shop_front] = _SHOPFRONT
    material[on_board] = np.where(board_b[on_board], _BOARD_B, _BOARD_A)

    factor = np.float32(0.9) + np.float32(0.1) * hash_unit(building, np.floor(s * 2.0), np.floor(z * 3.0))
    factor[(z > height - 1.2) & (z <= height)] *= np.float32(0.65)
    factor[window] *= np.float32(0.75) + np.float32(0.5) * hash_unit(building[window], column[window], storey[window])
    sun_term = np.cos(np.radians(normal_azimuth - views.sun_azimuth[view]).astype(np.float32))
    factor *= (views.ambient[view] + views.diffuse[view] * np.maximum(sun_term, 0.0)).astype(np.float32)
    colour = city.colours[building, material] * factor[:, None]

    glowing = np.flatnonzero(views.night[view] & (window | shop_front))
    if len(glowing):
        lit = hash_unit(building[glowing], column[glowing], storey[glowing], views.seed[view[glowing]]) < 0.4
        glowing = glowing[lit]
        glow = np.float32(0.7) + np.float32(0.3) * hash_unit(building[glowing], column[glowing], storey[glowing])
        colour[glowing] = _LIT_WINDOW_RGB * glow[:, None]
    return colour


def _nearest_distance(sorted_lines: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Distance from each value to the nearest of ``sorted_lines``."""
    index = np.searchsorted(sorted_lines, values)
    below = sorted_lines[np.clip(index - 1, 0, len(sorted_lines) - 1)]
    above = sorted_lines[np.clip(index, 0, len(sorted_lines) - 1)]
    return np.minimum(np.abs(values - below), np.abs(values - above))


def _ground_colour(city: City, views: Views, view: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Colours ``[P, 3]`` of ground points ``(gx, gy)`` seen by ``view``: road, lane marks,
    zebra crossings, pavement; snow whitens it."""
    half = city.street_width / 2
    to_ns = _nearest_distance(city.street_x, gx)  # distance to a north-south street's centre line
    to_ew = _nearest_distance(city.street_y, gy)
    on_ns, on_ew = to_ns < half, to_ew < half
    material = np.where(on_ns | on_ew, _ROAD, _PAVEMENT)
    material[(to_ns < 0.12) & (np.mod(gy, 6.0) < 3.0) & (to_ew > half + 3.0)] = _LANE_MARK
    material[(to_ew < 0.12) & (np.mod(gx, 6.0) < 3.0) & (to_ns > half + 3.0)] = _LANE_MARK
    material[on_ns & (to_ew >= half) & (to_ew < half + 3.0) & (np.mod(gx, 1.2) < 0.6)] = _ZEBRA
    material[on_ew & (to_ns >= half) & (to_ns < half + 3.0) & (np.mod(gy, 1.2) < 0.6)] = _ZEBRA
    factor = np.float32(0.92) + np.float32(0.08) * hash_unit(np.floor(gx * 2.0), np.floor(gy * 2.0))
    colour = _GROUND_RGB[material] * factor[:, None]
    snow = (views.snow[view] * np.where(material == _ROAD, 0.55, 0.9)).astype(np.float32)[:, None]
    colour = colour * (1 - snow) + np.float32(0.93) * snow
    light = (views.ambient[view] + 0.6 * views.diffuse[view]).astype(np.float32)
    return colour * light[:, None]


def render_views(city: City, views: Views, image_size: int) -> np.ndarray:
    """Render ``views`` of ``city`` as float images ``[N, H, W, 3]`` in [0, 1] (H = W = image_size),
    before occluders and camera response (see :func:`finish_images`).

    Each image column is a ray cast over the occupancy grid; the exact entry point into each
    building along the ray comes from a slab test on its footprint. A pixel row with
    elevation slope ``m`` shows the nearest building whose top slope ``(h - cam_h) / t`` is at
    least ``m`` (found with one ``searchsorted`` on the running maximum along the ray), the
    ground at ``t = cam_h / -m`` when that comes first, else the sky.
    """
    count, width, height = len(views), image_size, image_size
    steps = len(_MARCH)
    focal = (width / 2) / np.tan(np.radians(views.fov) / 2)  # [B]
    columns = np.arange(width) + 0.5 - width / 2
    ray_heading = views.heading[:, None] + np.degrees(np.arctan(columns[None, :] / focal[:, None]))  # [B, W]
    dir_x, dir_y = heading_vector(ray_heading)

    # march every ray over the occupancy grid: building id at each step [B, W, K]
    cells_x = ((views.x[:, None, None] + dir_x[..., None] * _MARCH) / city.cell_m).astype(np.float32)
    cells_y = ((views.y[:, None, None] + dir_y[..., None] * _MARCH) / city.cell_m).astype(np.float32)
    grid_y, grid_x = city.occupancy.shape
    inside = (cells_x >= 0) & (cells_x < grid_x) & (cells_y >= 0) & (cells_y < grid_y)
    flat_cell = (np.clip(cells_y.astype(np.int32), 0, grid_y - 1) * grid_x
                 + np.clip(cells_x.astype(np.int32), 0, grid_x - 1))
    ids = np.where(inside, city.occupancy.ravel()[flat_cell], -1)
    entering = ids >= 0
    entering[..., 1:] &= ids[..., 1:] != ids[..., :-1]
    entry_b, entry_w, entry_k = np.nonzero(entering)
    building = ids[entry_b, entry_w, entry_k]

    # exact entry into the building's footprint (slab test)
    rx, ry = dir_x[entry_b, entry_w], dir_y[entry_b, entry_w]
    safe_x = np.where(np.abs(rx) < 1e-9, 1e-9, rx)
    safe_y = np.where(np.abs(ry) < 1e-9, 1e-9, ry)
    cx, cy = views.x[entry_b], views.y[entry_b]
    rect = city.rects[building]
    tx = np.minimum((rect[:, 0] - cx) / safe_x, (rect[:, 2] - cx) / safe_x)
    ty = np.minimum((rect[:, 1] - cy) / safe_y, (rect[:, 3] - cy) / safe_y)
    x_face = tx > ty  # the ray crosses a wall facing east or west
    t_entry = np.clip(np.maximum(tx, ty), 0.3, None)
    along = np.where(x_face, cy + ry * t_entry, cx + rx * t_entry).astype(np.float32)  # position along the wall
    normal = np.where(x_face, np.where(rx > 0, 270.0, 90.0), np.where(ry > 0, 180.0, 0.0)).astype(np.float32)
    top_slope = (city.heights[building] - views.camera_height[entry_b]) / t_entry
    t_entry = t_entry.astype(np.float32)

    # running maximum of the top slope along each ray; one searchsorted finds, for every
    # pixel row, the first step whose building reaches above that row
    slope = np.full((count, width, steps), -_SLOPE_LIMIT)
    slope[entry_b, entry_w, entry_k] = np.clip(top_slope, -_SLOPE_LIMIT, _SLOPE_LIMIT)
    running = np.maximum.accumulate(slope, axis=-1)
    entry_index = np.zeros((count, width, steps), dtype=np.int64)
    entry_index[entry_b, entry_w, entry_k] = np.arange(len(building))
    rows = np.arange(height) + 0.5
    elevation = np.radians(views.pitch)[:, None] + np.arctan((height / 2 - rows)[None, :] / focal[:, None])
    pixel_slope = np.tan(np.clip(elevation, -1.45, 1.45))  # [B, H]
    lane = np.arange(count * width, dtype=np.float64).reshape(count, width, 1) * (4 * _SLOPE_LIMIT)
    found = np.searchsorted((running + lane).ravel(), (pixel_slope[:, None, :] + lane).ravel())
    k_hit = found.reshape(count, width, height) - (np.arange(count * width) * steps).reshape(count, width, 1)
    hit = k_hit < steps
    hit_entry = np.take_along_axis(entry_index, np.minimum(k_hit, steps - 1), axis=-1)  # [B, W, H]
    m = np.broadcast_to(pixel_slope.astype(np.float32)[:, None, :], (count, width, height))
    cam_h = views.camera_height.astype(np.float32)[:, None, None]
    hit_t = t_entry[hit_entry] if len(building) else np.zeros((count, width, height), dtype=np.float32)
    facade = hit & (cam_h + m * hit_t >= 0.0)
    ground = ~facade & (m < 0)
    sky = ~facade & ~ground

    image = np.empty((count, width, height, 3), dtype=np.float32)
    view_of = np.broadcast_to(np.arange(count)[:, None, None], (count, width, height))
    horizon_rgb = views.sky_horizon.astype(np.float32)
    zenith_rgb = views.sky_zenith.astype(np.float32)
    fog_m = views.fog_m.astype(np.float32)
    camera_height = views.camera_height.astype(np.float32)
    # sky: gradient from the horizon colour to the zenith colour
    sv = view_of[sky]
    blend = np.clip(m[sky] * 1.5, 0.0, 1.0)[:, None]
    image[sky] = horizon_rgb[sv] * (1 - blend) + zenith_rgb[sv] * blend
    # facades, fading into the horizon colour with distance
    fv = view_of[facade]
    fe = hit_entry[facade]
    ft = t_entry[fe]
    colour = _facade_colour(city, views, fv, building[fe], along[fe], camera_height[fv] + m[facade] * ft, normal[fe])
    fog = (1 - np.exp(-ft / fog_m[fv]))[:, None]
    image[facade] = colour + (horizon_rgb[fv] - colour) * fog
    # ground
    gv = view_of[ground]
    gt = camera_height[gv] / -m[ground]
    gw = np.broadcast_to(np.arange(width)[None, :, None], (count, width, height))[ground]
    gx = (views.x[gv] + dir_x[gv, gw] * gt).astype(np.float32)
    gy = (views.y[gv] + dir_y[gv, gw] * gt).astype(np.float32)
    colour = _ground_colour(city, views, gv, gx, gy)
    fog = (1 - np.exp(-gt / fog_m[gv]))[:, None]
    image[ground] = colour + (horizon_rgb[gv] - colour) * fog
    return image.transpose(0, 2, 1, 3)  # [B, H, W, 3]
