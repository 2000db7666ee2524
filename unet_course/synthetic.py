"""Procedural street scenes in the CARLA layout: the course's offline default dataset.

The course must run with no download, so it ships this generator instead of data. Frames are
written exactly like the classic assignment's CARLA frames (``CameraRGB/`` and ``CameraMask/``,
480x640 RGBA, class id in the mask's red channel), so the notebook code that reads real CARLA
frames reads these unchanged. Colours are drawn from overlapping ranges (grey cars, walls,
buildings and road; green cars, trees and grass; white lines, cars and clouds) so that colour
alone does not solve the task: a network has to use shape, texture and context.

Frame ``i`` depends only on ``(seed, i)``, so a dataset is identical whatever the number of
worker processes, and a rerun with the same settings finds the finished folder and does nothing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import tempfile
import zlib
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from unet_course.datasets import SYNTHETIC

# Bump whenever a change alters the pixels: cached datasets with an older version get rebuilt.
GENERATOR_VERSION = 2
DEFAULT_FRAMES = 1060  # size of the classic assignment's CARLA set
MANIFEST_NAME = "dataset.json"
PNG_COMPRESS_LEVEL = 1  # zlib level 1: PNG writing is half the cost of a frame at the default level

_ID = {name: i for i, name in enumerate(SYNTHETIC.class_names)}
BUILDING, FENCE, PEDESTRIAN, POLE = _ID["Building"], _ID["Fence"], _ID["Pedestrian"], _ID["Pole"]
ROAD_LINE, ROAD, SIDEWALK, VEGETATION = _ID["RoadLine"], _ID["Road"], _ID["Sidewalk"], _ID["Vegetation"]
VEHICLE, WALL, TRAFFIC_SIGN, SKY = _ID["Vehicle"], _ID["Wall"], _ID["TrafficSign"], _ID["Sky"]
GROUND, TRAFFIC_LIGHT, TERRAIN = _ID["Ground"], _ID["TrafficLight"], _ID["Terrain"]

# Draw order: the far-away skyline, then building facades, then what stands in front of them
# (park trees, then fences/walls/hedges), then the street furniture, cars and people, each
# layer painted far to near.
_LAYER_BUILDINGS, _LAYER_BEHIND_EDGE, _LAYER_EDGE, _LAYER_STREET = range(4)
_FAR = 50.0  # depth (road units) where streets end: farther facades would be a few pixels wide


# --------------------------------------------------------------------------------------------
# Colour choices. Ranges deliberately overlap between classes (see the module docstring).


def _grey(rng, low, high, tint=8):
    level = rng.uniform(low, high)
    return tuple(level + rng.uniform(-tint, tint, 3))


def _pick(rng, options):
    """One colour from a list of (r, g, b) centres, jittered so no two objects match exactly."""
    centre = options[rng.integers(len(options))]
    brightness = rng.uniform(0.8, 1.15)
    return tuple(min(max(c * brightness + jitter, 0.0), 255.0) for c, jitter in zip(centre, rng.uniform(-12, 12, 3)))


_CAR_COLOURS = [
    (225, 225, 222), (160, 162, 165), (110, 110, 112), (35, 35, 38), (150, 25, 25), (30, 50, 120),
    (40, 80, 45), (90, 125, 60), (210, 180, 40), (185, 170, 140), (95, 60, 40), (60, 110, 150),
]
_BUILDING_COLOURS = [
    (150, 150, 150), (110, 110, 112), (190, 188, 182), (210, 205, 195), (185, 165, 135),
    (150, 85, 65), (120, 70, 55), (95, 110, 130), (200, 190, 150), (165, 175, 150), (120, 140, 110),
]
_WALL_COLOURS = [(140, 140, 138), (175, 170, 160), (150, 90, 70), (190, 180, 155), (95, 95, 95)]
_FENCE_COLOURS = [(115, 85, 55), (135, 135, 135), (45, 70, 45), (80, 80, 85), (160, 130, 95)]
_FOLIAGE_COLOURS = [
    (55, 95, 35), (75, 120, 40), (40, 70, 35), (95, 135, 55), (110, 125, 60), (150, 130, 45),
    (160, 95, 40), (70, 85, 70),
]
_GRASS_COLOURS = [(95, 130, 55), (125, 140, 70), (150, 140, 85), (80, 110, 60), (130, 115, 80)]
_DIRT_COLOURS = [(125, 105, 80), (140, 130, 115), (100, 85, 65), (150, 150, 145)]
_SIDEWALK_COLOURS = [(150, 150, 150), (175, 172, 165), (125, 125, 128), (170, 140, 125), (190, 185, 170)]
_CLOTHES_COLOURS = [
    (30, 30, 35), (60, 60, 65), (150, 150, 150), (220, 220, 215), (40, 60, 120), (150, 30, 35),
    (60, 100, 50), (190, 160, 60), (120, 80, 50), (100, 120, 150), (200, 110, 140),
]
_SKIN_COLOURS = [(225, 190, 160), (200, 155, 120), (150, 105, 75), (95, 65, 45)]
_SIGN_COLOURS = [(190, 30, 30), (30, 70, 160), (230, 230, 225), (220, 190, 30), (30, 120, 60)]


# --------------------------------------------------------------------------------------------
# Camera and canvas.


class _View:
    """Pinhole camera over flat ground, in 'road units' (about 5 m).

    ``X`` is lateral (camera at 0, right positive), ``z`` depth (1 = the bottom row), ``Y``
    height above the ground. ``bend`` shifts the far end sideways so the road can curve.
    """

    def __init__(self, height, width, horizon, vanish_x, camera_height, bend):
        self.height, self.width = height, width
        self.horizon, self.vanish_x, self.bend = horizon, vanish_x, bend
        self.camera_height = camera_height
        self.scale = (height - horizon) / camera_height  # pixels per unit at z = 1

    def project(self, X, z, Y=0.0):
        t = 1.0 / max(z, 0.05)
        x = self.vanish_x + self.bend * (1.0 - t) ** 2 + X * t * self.scale
        y = self.horizon + (self.camera_height - Y) * t * self.scale
        return x, y

    def project_quads(self, X, z, Y):
        """Vectorised ``project`` for many quads: arrays of shape (n, 4) -> flat point lists."""
        t = 1.0 / np.maximum(z, 0.05)
        x = self.vanish_x + self.bend * (1.0 - t) ** 2 + X * t * self.scale
        y = self.horizon + (self.camera_height - Y) * t * self.scale
        return np.stack([x, y], axis=-1).reshape(len(x), 8).tolist()

    def pixels_per_unit(self, z):
        return self.scale / max(z, 0.05)


class _Scene:
    """One frame under construction: a material-id image, a shadow image and a draw queue.

    Each shape is drawn once, as a material id; a material carries its class, base colour and
    texture strength, so the label image and the RGB image come from the same pixels.
    """

    def __init__(self, rng, view):
        self.rng, self.view = rng, view
        self.classes, self.colours, self.fine_grain, self.blotch_grain, self.is_ground = [], [], [], [], []
        self.queue = []
        self.shade_image = Image.new("L", (view.width, view.height), 255)
        self.shade_draw = ImageDraw.Draw(self.shade_image)
        self.shadow_level = 255
        self.sun = (0.0, 0.0)  # ground offset of a shadow per unit of height; (0, 0) = overcast

    def material(self, class_id, colour, fine=0.04, blotch=0.04, ground=False):
        self.classes.append(class_id)
        self.colours.append(colour)
        self.fine_grain.append(fine)
        self.blotch_grain.append(blotch)
        self.is_ground.append(ground)
        return len(self.classes) - 1

    def start_drawing(self, material_ids):
        self.image = Image.fromarray(material_ids.astype(np.int32), mode="I")
        self.draw = ImageDraw.Draw(self.image)

    def later(self, layer, z, function, *args):
        """Queue a drawing for painter's order (by layer, then far to near)."""
        self.queue.append((layer, -z, len(self.queue), partial(function, *args)))

    def draw_queue(self):
        for *_, function in sorted(self.queue, key=lambda item: item[:3]):
            function()

    # World-space shapes.
    def polygon(self, points, material):
        self.draw.polygon([self.view.project(*p) for p in points], fill=material)

    def along_street(self, X, near, far, bottom, top, material):
        """Vertical rectangle parallel to the street (a facade, a fence, a car's side)."""
        self.polygon([(X, near, bottom), (X, far, bottom), (X, far, top), (X, near, top)], material)

    def level(self, left, right, near, far, Y, material):
        """Horizontal rectangle at height ``Y`` (a roof, the top of a wall or hedge)."""
        self.polygon([(left, near, Y), (right, near, Y), (right, far, Y), (left, far, Y)], material)

    def ground_shadow(self, points):
        if self.sun != (0.0, 0.0):
            self.shade_draw.polygon([self.view.project(X, z) for X, z in points], fill=self.shadow_level)

    def shadow_of_upright(self, X, z, height, half_width):
        """Shadow on the ground of something vertical standing at (X, z)."""
        dx, dz = self.sun[0] * height, self.sun[1] * height
        self.ground_shadow([(X - half_width, z), (X + half_width, z),
                            (X + half_width + dx, max(z + dz, 0.3)), (X - half_width + dx, max(z + dz, 0.3))])

    # Shapes that face the camera, given in units around a point standing on the ground.
    def upright_box(self, X, z, left, right, bottom, top, material):
        x0, y0 = self.view.project(X + left, z, bottom)
        x1, y1 = self.view.project(X + right, z, top)
        if x1 - x0 > 0.3 and y0 - y1 > 0.3:
            self.draw.rectangle((x0, y1, x1, y0), fill=material)

    def upright_ellipse(self, X, z, centre_dx, centre_y, radius_x, radius_y, material):
        x0, y0 = self.view.project(X + centre_dx - radius_x, z, centre_y + radius_y)
        x1, y1 = self.view.project(X + centre_dx + radius_x, z, centre_y - radius_y)
        if x1 - x0 > 0.3 and y1 - y0 > 0.3:
            self.draw.ellipse((x0, y0, x1, y1), fill=material)

    def upright_polygon(self, X, z, points, material):
        self.draw.polygon([self.view.project(X + dx, z, y) for dx, y in points], fill=material)


# --------------------------------------------------------------------------------------------
# Scene layout: ground, sky, sides of the street.


def _lay_ground_and_sky(scene, road, sides):
    """Material id for every pixel before anything stands on it: sky above, ground below.

    The ground is classified per pixel from its (X, z) position, so lines converge and dashes
    shorten with depth as in a real camera.
    """
    view = scene.view
    height, width = view.height, view.width
    sky = scene.material(SKY, (0, 0, 0), fine=0.0, blotch=0.0)
    ids = np.full((height, width), sky, np.int32)

    first_row = min(int(np.ceil(view.horizon)), height)
    t = (np.arange(first_row, height) + 0.5 - view.horizon) / (height - view.horizon)
    centre = view.vanish_x + view.bend * (1.0 - t) ** 2
    X = ((np.arange(width) + 0.5)[None, :] - centre[:, None]) / (t[:, None] * view.scale)
    z = (1.0 / t)[:, None]
    ground = np.where(X < 0, sides[-1]["outer"], sides[1]["outer"]).astype(np.int32)

    for side in (-1, 1):
        info = sides[side]
        edge = road["left"] if side < 0 else road["right"]
        outward = X * side
        if info["dirt_width"] > 0:
            dirt_end = abs(edge) + info["sidewalk"] + info["dirt_width"]
            ground[(outward >= abs(edge)) & (outward < dirt_end)] = info["dirt"]
        ground[(outward >= abs(edge)) & (outward < abs(edge) + info["sidewalk"])] = info["sidewalk_material"]
        ground[(outward >= abs(edge)) & (outward < abs(edge) + info["curb_width"])] = info["curb"]

    on_road = (X >= road["left"]) & (X <= road["right"])
    ground[on_road] = road["material"]
    for line in road["lines"]:
        painted = np.abs(X - line["X"]) < line["width"] / 2
        if line["dash_period"]:
            painted &= ((z / line["dash_period"] + line["phase"]) % 1.0) < line["duty"]
        ground[painted & on_road] = line["material"]
    if road["crossing"]:
        near, far = road["crossing"]
        stripes = ((X / 0.22) % 1.0 < 0.5) & (z >= near) & (z <= far)
        ground[stripes & on_road] = road["line_material"]
    ids[first_row:] = ground
    return ids, sky, first_row


def _sky_colours(rng, view, rows):
    """Sky gradient with soft clouds: clear blue, overcast grey or a warm evening sky."""
    width = view.width
    mood = rng.choice(3, p=[0.6, 0.28, 0.12])
    if mood == 0:
        top = np.array([rng.uniform(40, 110), rng.uniform(100, 160), rng.uniform(170, 235)])
        low = top + rng.uniform(40, 90)
    elif mood == 1:
        top = np.array(_grey(rng, 110, 200, 6))
        low = top + rng.uniform(5, 40)
    else:
        top = np.array([rng.uniform(80, 130), rng.uniform(100, 140), rng.uniform(150, 190)])
        low = np.array([rng.uniform(210, 250), rng.uniform(160, 200), rng.uniform(110, 160)])
    low = np.clip(low, 0, 250)
    v = ((np.arange(rows) + 0.5) / max(rows, 1))[:, None, None] ** 1.5
    sky = (top * (1 - v) + low * v).astype(np.float32)

    cloud_cover = rng.uniform(0.0, 0.9) if mood != 1 else rng.uniform(0.3, 1.0)
    coarse = _upsample(rng.standard_normal((4, 6)).astype(np.float32), 12, 16)
    field = _upsample(coarse + 0.5 * rng.standard_normal((12, 16)).astype(np.float32), rows, width)
    clouds = np.clip((field - (1.2 - 2.0 * cloud_cover)) * 1.2, 0.0, 1.0)[..., None]
    cloud_colour = np.array(_grey(rng, 150, 250, 5), np.float32)
    return sky + (cloud_colour - sky) * clouds


def _upsample(array, height, width):
    """Smooth noise field: a small random grid blown up with bicubic interpolation."""
    return np.asarray(Image.fromarray(array, mode="F").resize((width, height), Image.BICUBIC))


def _plan_road(scene):
    rng = scene.rng
    left, right = -rng.uniform(0.35, 1.7), rng.uniform(0.35, 1.7)
    asphalt = _grey(rng, 55, 150, 6)
    material = scene.material(ROAD, asphalt, fine=rng.uniform(0.03, 0.08), blotch=rng.uniform(0.02, 0.06), ground=True)
    white = _grey(rng, 185, 245, 4)
    line_material = scene.material(ROAD_LINE, white, fine=0.05, blotch=0.05, ground=True)
    yellow = scene.material(ROAD_LINE, (rng.uniform(190, 235), rng.uniform(160, 200), rng.uniform(30, 80)),
                            fine=0.05, blotch=0.05, ground=True)
    width = rng.uniform(0.018, 0.035)
    lines = []
    if rng.random() < 0.7:
        for edge in (left + 0.06, right - 0.06):
            lines.append({"X": edge, "width": width, "dash_period": 0, "material": line_material})
    lane = rng.uniform(0.6, 0.8)
    period, duty, phase = rng.uniform(1.2, 3.0), rng.uniform(0.3, 0.55), rng.random()
    boundary = right - lane
    centre_line = rng.integers(3) if rng.random() < 0.35 else -1
    number = 0
    while boundary > left + 0.3:
        if number == centre_line:
            lines.append({"X": boundary, "width": width, "dash_period": 0, "material": yellow})
        else:
            lines.append({"X": boundary, "width": width, "dash_period": period, "duty": duty,
                          "phase": phase, "material": line_material})
        boundary -= lane
        number += 1
    crossing = None
    if rng.random() < 0.25:
        near = rng.uniform(1.5, 8.0)
        crossing = (near, near + rng.uniform(0.4, 0.8))
    lane_centres = list(np.arange(right - lane / 2, left, -lane))
    return {"left": left, "right": right, "material": material, "lines": lines, "crossing": crossing,
            "line_material": line_material, "lanes": lane_centres}


def _plan_side(scene, side, road):
    """What lines one side of the street: a city block, a park or a wall, on its sidewalk."""
    rng = scene.rng
    kind = rng.choice(["city", "park", "wall"], p=[0.5, 0.33, 0.17])
    sidewalk = rng.uniform(0.3, 0.9) if rng.random() < 0.88 else 0.0
    paving = _pick(rng, _SIDEWALK_COLOURS)
    curb_colour = tuple(np.clip(np.asarray(paving) * rng.uniform(0.75, 1.2), 0, 255))
    grass = scene.material(TERRAIN, _pick(rng, _GRASS_COLOURS), fine=0.12, blotch=0.15, ground=True)
    return {
        "kind": kind,
        "sidewalk": sidewalk,
        "curb_width": min(0.05, sidewalk),
        "sidewalk_material": scene.material(SIDEWALK, paving, fine=0.06, blotch=0.06, ground=True),
        "curb": scene.material(SIDEWALK, curb_colour, fine=0.04, blotch=0.04, ground=True),
        "outer": grass,
        "dirt": scene.material(GROUND, _pick(rng, _DIRT_COLOURS), fine=0.1, blotch=0.1, ground=True),
        "dirt_width": rng.uniform(0.1, 0.5) if rng.random() < 0.3 else 0.0,
        "edge": abs(road["left"] if side < 0 else road["right"]) + sidewalk,
    }


def _plan_skyline(scene, view):
    """Hills, a distant tree line and far buildings sitting on the horizon."""
    rng = scene.rng
    width, horizon = view.width, view.horizon
    base = horizon + 1.0
    if rng.random() < 0.45:
        hill = scene.material(TERRAIN, _pick(rng, _GRASS_COLOURS + [(120, 140, 150)]), fine=0.03, blotch=0.1)
        xs = np.linspace(-10, width + 10, 12)
        ys = horizon - np.abs(rng.normal(0, 0.06, 12)).cumsum()[::-1] * view.height * rng.uniform(0.3, 1.0)
        scene.draw.polygon(list(zip(xs, ys)) + [(width + 10, base), (-10, base)], fill=hill)
    if rng.random() < 0.6:
        foliage = scene.material(VEGETATION, _pick(rng, _FOLIAGE_COLOURS), fine=0.15, blotch=0.2)
        x = rng.uniform(-20, 0)
        while x < width:
            radius = rng.uniform(0.005, 0.03) * view.height
            scene.draw.ellipse((x - radius, base - 2.2 * radius, x + radius, base + radius), fill=foliage)
            x += radius * rng.uniform(0.6, 2.5)
    if rng.random() < 0.55:
        x = rng.uniform(-20, width * 0.3)
        while x < width:
            block_width = rng.uniform(0.01, 0.07) * width
            block_height = rng.uniform(0.005, 0.09) * view.height
            far = scene.material(BUILDING, _pick(rng, _BUILDING_COLOURS), fine=0.04, blotch=0.05)
            scene.draw.rectangle((x, base - block_height, x + block_width, base), fill=far)
            x += block_width + rng.exponential(0.04 * width)


# --------------------------------------------------------------------------------------------
# Things that stand on the ground.


def _building_row(scene, side, line_X, z_start, z_end):
    """Facades along one side, each with windows, drawn as perspective quads."""
    rng = scene.rng
    z = z_start
    while z < z_end:
        length = rng.uniform(0.8, 4.5)
        height = rng.uniform(0.9, 9.0) if rng.random() < 0.85 else rng.uniform(9.0, 16.0)
        setback = rng.uniform(0.0, 0.4) if rng.random() < 0.3 else 0.0
        scene.later(_LAYER_BUILDINGS, z, _building, scene, side, line_X + side * setback, z, z + length, height)
        z += length + (rng.exponential(0.6) if rng.random() < 0.35 else 0.0)


def _building(scene, side, X, near, far, height):
    rng = scene.rng
    colour = np.asarray(_pick(rng, _BUILDING_COLOURS))
    sun_behind = scene.sun[0] * side < 0  # then the street face is in shade and the shadow falls on the street
    facade_colour = colour * (rng.uniform(0.6, 0.8) if sun_behind else 1.0)
    facade = scene.material(BUILDING, tuple(facade_colour), fine=0.04, blotch=0.06)
    end_face = scene.material(BUILDING, tuple(facade_colour * rng.uniform(0.7, 0.95)), fine=0.04, blotch=0.06)
    depth = rng.uniform(1.0, 3.0)
    scene.upright_box(X, near, min(0, side * depth), max(0, side * depth), 0, height, end_face)
    scene.along_street(X, near, far, 0, height, facade)
    if sun_behind:
        dx, dz = scene.sun[0] * height, scene.sun[1] * height
        scene.ground_shadow([(X, near), (X, far), (X + dx, max(far + dz, 0.3)), (X + dx, max(near + dz, 0.3))])

    glass = scene.material(BUILDING, _grey(rng, 25, 120, 15) if rng.random() < 0.8 else _pick(rng, [(220, 200, 120)]),
                           fine=0.03, blotch=0.08)
    floor = rng.uniform(0.55, 0.8)
    spacing = rng.uniform(0.35, 0.8)
    window_width, window_height = spacing * rng.uniform(0.35, 0.75), floor * rng.uniform(0.35, 0.6)
    if rng.random() < 0.35:  # shop windows on the ground floor
        scene.along_street(X, near + 0.1, far - 0.1, 0.08, floor * 0.8, glass)
    starts = np.arange(near + spacing / 2, far - window_width, spacing)
    starts = starts[scene.view.pixels_per_unit(1.0) / starts * window_height >= 1.5]  # no sub-pixel specks
    bottoms = np.arange(floor * 1.2, height - window_height, floor)
    start, bottom = (grid.reshape(-1, 1) for grid in np.meshgrid(starts, bottoms))
    z = start + np.array([0, window_width, window_width, 0])
    Y = bottom + np.array([0, 0, window_height, window_height])
    for quad in scene.view.project_quads(X, z, Y):
        scene.draw.polygon(quad, fill=glass)


def _fence(scene, side, X, near, far):
    rng = scene.rng
    material = scene.material(FENCE, _pick(rng, _FENCE_COLOURS), fine=0.05, blotch=0.05)
    height = rng.uniform(0.18, 0.4)
    if rng.random() < 0.4:  # solid panels
        scene.along_street(X, near, far, 0, height, material)
        return
    for rail in (height * 0.35, height * 0.9):
        scene.along_street(X, near, far, rail, rail + 0.03, material)
    post_gap = rng.uniform(0.1, 0.5)
    for z in np.arange(near, far, post_gap):
        scene.along_street(X, z, z + 0.04, 0, height, material)


def _wall(scene, side, X, near, far):
    rng = scene.rng
    colour = np.asarray(_pick(rng, _WALL_COLOURS))
    height = rng.uniform(0.15, 0.7)
    body = scene.material(WALL, tuple(colour), fine=0.05, blotch=0.08)
    cap = scene.material(WALL, tuple(colour * rng.uniform(0.7, 1.25)), fine=0.04, blotch=0.04)
    scene.along_street(X, near, far, 0, height, body)
    scene.level(X, X + side * 0.06, near, far, height, cap)
    scene.along_street(X, near, far, height - 0.03, height, cap)


def _hedge(scene, side, X, near, far):
    rng = scene.rng
    colour = np.asarray(_pick(rng, _FOLIAGE_COLOURS))
    height, thickness = rng.uniform(0.12, 0.3), rng.uniform(0.1, 0.3)
    front = scene.material(VEGETATION, tuple(colour), fine=0.2, blotch=0.25)
    top = scene.material(VEGETATION, tuple(colour * 1.2), fine=0.2, blotch=0.25)
    scene.level(X, X + side * thickness, near, far, height, top)
    scene.along_street(X, near, far, 0, height, front)


def _tree(scene, X, z):
    rng = scene.rng
    colour = np.asarray(_pick(rng, _FOLIAGE_COLOURS))
    trunk = scene.material(VEGETATION, _pick(rng, [(90, 70, 50), (70, 60, 55), (120, 105, 90)]), fine=0.1, blotch=0.1)
    leaves = [scene.material(VEGETATION, tuple(np.clip(colour * f, 0, 255)), fine=0.22, blotch=0.3)
              for f in (rng.uniform(0.6, 0.85), 1.0, rng.uniform(1.1, 1.35))]
    trunk_height, trunk_width = rng.uniform(0.25, 0.8), rng.uniform(0.03, 0.08)
    if rng.random() < 0.3:  # conifer: stacked triangles
        top = trunk_height + rng.uniform(0.8, 2.2)
        spread = rng.uniform(0.25, 0.5)
        scene.shadow_of_upright(X, z, top, spread * 0.6)
        scene.upright_box(X, z, -trunk_width / 2, trunk_width / 2, 0, trunk_height + 0.1, trunk)
        steps = 4
        for step in range(steps):
            low = trunk_height * 0.6 + (top - trunk_height * 0.6) * step / steps * 0.85
            half = spread * (1 - step / (steps + 1))
            tip = top if step == steps - 1 else low + (top - low) * 0.6
            scene.upright_polygon(X, z, [(-half, low), (half, low), (0, tip)], leaves[step % 3])
        return
    radius = rng.uniform(0.25, 0.7)
    crown_centre = trunk_height + radius * 0.8
    scene.shadow_of_upright(X, z, crown_centre, radius * 0.7)
    scene.upright_box(X, z, -trunk_width / 2, trunk_width / 2, 0, crown_centre, trunk)
    for _ in range(rng.integers(4, 9)):
        r = radius * rng.uniform(0.45, 0.8)
        scene.upright_ellipse(X, z, rng.uniform(-0.6, 0.6) * radius, crown_centre + rng.uniform(-0.4, 0.6) * radius,
                              r, r * rng.uniform(0.8, 1.1), leaves[rng.integers(3)])


def _street_lamp(scene, side, X, z):
    rng = scene.rng
    pole_colour = _pick(rng, [(150, 150, 150), (90, 90, 95), (50, 55, 50), (170, 170, 160)])
    pole = scene.material(POLE, pole_colour, fine=0.03, blotch=0.03)
    height, arm = rng.uniform(1.1, 1.9), rng.uniform(0.0, 0.7)
    scene.shadow_of_upright(X, z, height, 0.015)
    scene.upright_box(X, z, -0.018, 0.018, 0, height, pole)
    if arm > 0.1:
        reach = -side * arm
        scene.upright_box(X, z, min(0, reach), max(0, reach), height - 0.025, height, pole)
        scene.upright_box(X, z, reach - 0.06, reach + 0.06, height - 0.05, height, pole)


def _traffic_sign(scene, X, z):
    rng = scene.rng
    pole = scene.material(POLE, _grey(rng, 100, 180), fine=0.03, blotch=0.03)
    height, size = rng.uniform(0.4, 0.65), rng.uniform(0.06, 0.12)
    scene.shadow_of_upright(X, z, height, 0.012)
    scene.upright_box(X, z, -0.012, 0.012, 0, height, pole)
    outer_colour, inner_colour = (_pick(rng, _SIGN_COLOURS) for _ in range(2))
    outer = scene.material(TRAFFIC_SIGN, outer_colour, fine=0.03, blotch=0.03)
    inner = scene.material(TRAFFIC_SIGN, inner_colour, fine=0.03, blotch=0.03)
    centre = height + size
    shape = rng.integers(3)
    if shape == 0:
        scene.upright_ellipse(X, z, 0, centre, size, size, outer)
        scene.upright_ellipse(X, z, 0, centre, size * 0.72, size * 0.72, inner)
    elif shape == 1:
        base = centre - size * 0.8
        scene.upright_polygon(X, z, [(-size, base), (size, base), (0, centre + size)], outer)
        scene.upright_polygon(X, z, [(-size * 0.6, centre - size * 0.55), (size * 0.6, centre - size * 0.55),
                                     (0, centre + size * 0.5)], inner)
    else:
        wide = size * rng.uniform(1.0, 2.2)
        scene.upright_box(X, z, -wide, wide, centre - size, centre + size, outer)
        scene.upright_box(X, z, -wide * 0.8, wide * 0.8, centre - size * 0.7, centre + size * 0.7, inner)


def _traffic_light(scene, side, X, z):
    rng = scene.rng
    pole = scene.material(POLE, _pick(rng, [(90, 90, 95), (150, 150, 150), (60, 65, 55)]), fine=0.03, blotch=0.03)
    body = scene.material(TRAFFIC_LIGHT, _pick(rng, [(35, 35, 35), (60, 65, 55), (170, 150, 40), (110, 110, 110)]),
                          fine=0.03, blotch=0.03)
    lit = rng.integers(3)
    lamp_colours = [(240, 40, 30), (245, 190, 40), (60, 230, 110)]
    lamps = [scene.material(TRAFFIC_LIGHT, colour if i == lit else tuple(c * 0.25 for c in colour),  # unlit: dim
                            fine=0.02, blotch=0.02) for i, colour in enumerate(lamp_colours)]
    height = rng.uniform(0.8, 1.3)
    scene.shadow_of_upright(X, z, height, 0.02)
    scene.upright_box(X, z, -0.025, 0.025, 0, height, pole)
    housings = [0.0]
    if rng.random() < 0.7:  # an arm over the road with one or two more lights
        reach = -side * rng.uniform(0.5, 1.4)
        scene.upright_box(X, z, min(0, reach), max(0, reach), height - 0.03, height, pole)
        housings += [reach * f for f in ((1.0,) if rng.random() < 0.5 else (0.55, 1.0))]
    for dx in housings:
        top = height if dx else height * rng.uniform(0.7, 0.9)
        scene.upright_box(X, z, dx - 0.045, dx + 0.045, top - 0.26, top, body)
        for i, lamp in enumerate(lamps):
            scene.upright_ellipse(X, z, dx, top - 0.05 - i * 0.08, 0.028, 0.028, lamp)


def _car(scene, X, z, oncoming):
    """A car seen from behind (or the front, if oncoming), with its inner side and roof."""
    rng = scene.rng
    colour = np.asarray(_pick(rng, _CAR_COLOURS))
    big = rng.random() < 0.15
    half_width = rng.uniform(0.17, 0.2) * (1.2 if big else 1.0)
    length = rng.uniform(0.8, 1.0) * (1.5 if big else 1.0)
    body_top = rng.uniform(0.17, 0.22) * (1.5 if big else 1.0)
    roof = body_top + (rng.uniform(0.1, 0.14) if not big else rng.uniform(0.05, 0.2))
    cabin_near, cabin_far = (0.25, 0.7) if not big else (0.05, 1.0)
    cabin_near, cabin_far = cabin_near * length, cabin_far * length
    paint = scene.material(VEHICLE, tuple(colour), fine=0.02, blotch=0.03)
    paint_side = scene.material(VEHICLE, tuple(colour * rng.uniform(0.65, 0.85)), fine=0.02, blotch=0.03)
    top_colour = np.clip(colour * rng.uniform(1.05, 1.3) + 10, 0, 255)
    paint_top = scene.material(VEHICLE, tuple(top_colour), fine=0.02, blotch=0.03)
    glass = scene.material(VEHICLE, _grey(rng, 25, 90, 10), fine=0.02, blotch=0.05)
    rubber = scene.material(VEHICLE, _grey(rng, 15, 40, 3), fine=0.03, blotch=0.02)
    light_colour = (230, 225, 200) if oncoming else (190, 25, 25)
    lights = scene.material(VEHICLE, light_colour, fine=0.02, blotch=0.02)
    left, right = X - half_width, X + half_width
    inset = 0.03

    dx, dz = scene.sun[0] * body_top, scene.sun[1] * body_top
    scene.ground_shadow([(left - 0.02, z - 0.05), (right + 0.02, z - 0.05),
                         (right + 0.02 + dx, z + length + dz), (left - 0.02 + dx, z + length + dz)])
    if abs(X) > half_width:  # the side that faces the camera
        side_X = left if X > 0 else right
        cabin_X = side_X + (inset if X > 0 else -inset)
        scene.along_street(side_X, z, z + length, 0.04, body_top, paint_side)
        scene.polygon([(cabin_X, z + cabin_near, body_top), (cabin_X, z + cabin_far, body_top),
                       (cabin_X, z + cabin_far - 0.08, roof), (cabin_X, z + cabin_near + 0.08, roof)], glass)
        for wheel_z in (z + 0.15 * length, z + 0.85 * length - 0.12):
            scene.along_street(side_X, wheel_z, wheel_z + 0.12, 0, 0.09, rubber)
    if body_top < scene.view.camera_height:
        scene.level(left, right, z, z + length, body_top, paint_top)
    if roof < scene.view.camera_height:
        scene.level(left + inset, right - inset, z + cabin_near + 0.08, z + cabin_far - 0.08, roof, paint)
    scene.polygon([(left + inset, z + cabin_near, body_top), (right - inset, z + cabin_near, body_top),
                   (right - inset, z + cabin_near + 0.08, roof), (left + inset, z + cabin_near + 0.08, roof)], glass)
    scene.upright_box(X, z, -half_width, half_width, 0.04, body_top, paint)
    scene.upright_box(X, z, -half_width + 0.01, -half_width + 0.07, 0, 0.07, rubber)
    scene.upright_box(X, z, half_width - 0.07, half_width - 0.01, 0, 0.07, rubber)
    scene.upright_box(X, z, -half_width * 0.9, half_width * 0.9, 0.03, 0.07, rubber)  # bumper
    scene.upright_box(X, z, -half_width + 0.01, -half_width + 0.06, body_top - 0.06, body_top - 0.025, lights)
    scene.upright_box(X, z, half_width - 0.06, half_width - 0.01, body_top - 0.06, body_top - 0.025, lights)
    plate = scene.material(VEHICLE, _grey(rng, 180, 240), fine=0.02, blotch=0.02)
    scene.upright_box(X, z, -0.045, 0.045, 0.08, 0.11, plate)


def _pedestrian(scene, X, z):
    rng = scene.rng
    height = rng.uniform(0.3, 0.38)
    palettes = (_CLOTHES_COLOURS, _CLOTHES_COLOURS, _SKIN_COLOURS, _CLOTHES_COLOURS[:3])  # hair: black, grey, white
    shirt, trousers, skin, hair = (scene.material(PEDESTRIAN, _pick(rng, palette), fine=0.04, blotch=0.06)
                                   for palette in palettes)
    stride = rng.uniform(0.0, 0.1) * height
    hip, shoulder, half = 0.48 * height, 0.8 * height, 0.1 * height
    leg = 0.04 * height
    scene.shadow_of_upright(X, z, height, half)
    for foot in (-stride, stride):
        scene.upright_polygon(X, z, [(-leg * 1.5 + foot * 0.2, hip), (leg * 1.5 + foot * 0.2, hip),
                                     (foot + leg, 0), (foot - leg, 0)], trousers)
    swing = rng.uniform(-0.06, 0.06) * height
    for arm_side in (-1, 1):
        base = arm_side * half
        scene.upright_polygon(X, z, [(base - leg * arm_side * 0.2, shoulder), (base + arm_side * leg * 1.6, shoulder),
                                     (base + arm_side * leg + swing * arm_side, hip * 0.95),
                                     (base + swing * arm_side, hip * 0.95)], shirt)
    scene.upright_box(X, z, -half, half, hip * 0.95, shoulder + 0.02 * height, shirt)
    scene.upright_ellipse(X, z, 0, 0.9 * height, 0.065 * height, 0.085 * height, skin)
    scene.upright_ellipse(X, z, 0, 0.94 * height, 0.068 * height, 0.055 * height, hair)


def _depth(rng, near, far):
    """Depth drawn log-uniformly: as many objects per doubling of distance, so near, big ones are common."""
    return float(np.exp(rng.uniform(np.log(near), np.log(far))))


def _populate(scene, road, sides):
    """Queue everything that stands on the ground, side by side and on the road."""
    rng = scene.rng
    for side in (-1, 1):
        info = sides[side]
        edge = info["edge"]
        if info["kind"] == "city":
            _building_row(scene, side, side * (edge + rng.uniform(0.0, 0.2)), rng.uniform(0.5, 3.0), _FAR)
        else:
            if rng.random() < 0.6:
                _building_row(scene, side, side * (edge + rng.uniform(2.0, 6.0)), rng.uniform(2.0, 15.0), _FAR)
            for _ in range(rng.integers(2, 14)):
                z = _depth(rng, 1.0, 40.0)
                scene.later(_LAYER_BEHIND_EDGE, z, _tree, scene, side * (edge + rng.uniform(0.2, 3.0)), z)
            near = rng.uniform(0.5, 3.0)
            far = near + rng.uniform(5.0, 60.0)
            boundary = _wall if info["kind"] == "wall" else rng.choice([_fence, _hedge, None], p=[0.45, 0.3, 0.25])
            if boundary is not None:
                scene.later(_LAYER_EDGE, far, boundary, scene, side, side * (edge + 0.02), near, far)

        curb_X = abs(road["left"] if side < 0 else road["right"]) + 0.12
        if rng.random() < 0.75:
            spacing, z = rng.uniform(2.0, 6.0), rng.uniform(0.8, 3.0)
            while z < 45:
                scene.later(_LAYER_STREET, z, _street_lamp, scene, side, side * curb_X, z)
                z += spacing
        if info["sidewalk"] > 0.3 and rng.random() < 0.5:
            for _ in range(rng.integers(1, 6)):
                z = _depth(rng, 1.0, 30.0)
                scene.later(_LAYER_STREET, z, _tree, scene, side * (curb_X + rng.uniform(0.1, 0.3)), z)
        for _ in range(rng.integers(0, 3)):
            z = _depth(rng, 1.2, 25.0)
            scene.later(_LAYER_STREET, z, _traffic_sign, scene, side * (curb_X + rng.uniform(0.0, 0.1)), z)
        if rng.random() < 0.35:
            z = _depth(rng, 1.5, 25.0)
            scene.later(_LAYER_STREET, z, _traffic_light, scene, side, side * curb_X, z)
        for _ in range(rng.integers(0, 5) if rng.random() < 0.7 else 0):
            z = _depth(rng, 0.9, 30.0)
            walk_X = abs(road["left"] if side < 0 else road["right"]) + rng.uniform(0.1, max(info["sidewalk"], 0.2))
            scene.later(_LAYER_STREET, z, _pedestrian, scene, side * walk_X, z)

    if road["crossing"] and rng.random() < 0.6:
        near, far = road["crossing"]
        for _ in range(rng.integers(1, 4)):
            z = rng.uniform(near, far)
            scene.later(_LAYER_STREET, z, _pedestrian, scene, rng.uniform(road["left"], road["right"]), z)
    for _ in range(rng.integers(0, 8)):
        lane_X = road["lanes"][rng.integers(len(road["lanes"]))] if road["lanes"] else 0.0
        z = _depth(rng, 1.1, 40.0)
        oncoming = lane_X < -0.4 and rng.random() < 0.5
        scene.later(_LAYER_STREET, z, _car, scene, lane_X + rng.uniform(-0.08, 0.08), z, oncoming)
    if rng.random() < 0.3:  # cars parked along the curb
        side = rng.choice([-1, 1])
        for _ in range(rng.integers(1, 5)):
            z = _depth(rng, 1.2, 25.0)
            parked_X = side * (abs(road["left"] if side < 0 else road["right"]) - 0.22)
            scene.later(_LAYER_STREET, z, _car, scene, parked_X, z, False)


# --------------------------------------------------------------------------------------------
# Rendering.


def render_frame(seed: int, index: int, size: tuple[int, int] = SYNTHETIC.image_size) -> tuple[np.ndarray, np.ndarray]:
    """Draw frame ``index`` of dataset ``seed``: ``(rgb uint8 HxWx3, class ids uint8 HxW)``.

    Depends only on ``(seed, index, size)``, which is what makes parallel generation reproducible.
    """
    height, width = size
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    horizon = height * rng.uniform(0.36, 0.52)
    view = _View(height, width, horizon, vanish_x=width * rng.uniform(0.3, 0.7),
                 camera_height=rng.uniform(0.28, 0.42),
                 bend=width * rng.uniform(-0.3, 0.3) if rng.random() < 0.4 else 0.0)
    scene = _Scene(rng, view)
    if rng.random() < 0.7:
        scene.sun = (rng.uniform(-1.0, 1.0), rng.uniform(-0.6, 0.6))
        scene.shadow_level = int(255 * rng.uniform(0.4, 0.7))

    road = _plan_road(scene)
    sides = {side: _plan_side(scene, side, road) for side in (-1, 1)}
    material_ids, sky, first_ground_row = _lay_ground_and_sky(scene, road, sides)
    scene.start_drawing(material_ids)
    _plan_skyline(scene, view)
    _populate(scene, road, sides)
    scene.draw_queue()
    return _colourise(scene, sky, first_ground_row)


def _colourise(scene, sky, first_ground_row):
    """Turn material ids into pixels: base colour x texture x shadow x global lighting.

    Texture is luminance noise at two scales (fine grain, blotches) whose strength depends on
    the material; the fine grain also carries the sensor noise, so every pixel gets some.
    """
    rng, view = scene.rng, scene.view
    height, width = view.height, view.width
    material_ids = np.asarray(scene.image)
    ids = np.take(np.asarray(scene.classes, np.uint8), material_ids)

    contrast = rng.uniform(0.75, 1.2)
    gain = (rng.uniform(0.6, 1.25) * contrast * rng.uniform(0.9, 1.1, 3)).astype(np.float32)  # exposure, white balance
    rgb = np.take(np.asarray(scene.colours, np.float32) * gain, material_ids, axis=0)
    sky_rows = max(first_ground_row, 1)
    is_sky = (material_ids[:sky_rows] == sky)[..., None]
    np.copyto(rgb[:sky_rows], _sky_colours(rng, view, sky_rows) * gain, where=is_sky)

    sensor_noise = rng.uniform(0.01, 0.03)
    fine = rng.standard_normal((height, width), np.float32)
    coarse_noise = rng.standard_normal((max(height // 8, 2), max(width // 8, 2))).astype(np.float32)
    blotches = _upsample(coarse_noise, height, width)
    light = np.take(np.asarray(scene.fine_grain, np.float32) + np.float32(sensor_noise), material_ids) * fine
    light += np.take(np.asarray(scene.blotch_grain, np.float32), material_ids) * blotches
    light += 1.0
    shadow = np.asarray(scene.shade_image, np.float32) * np.float32(1 / 255) - np.float32(1.0)
    light *= 1.0 + np.take(np.asarray(scene.is_ground, np.float32), material_ids) * shadow

    rgb *= light[..., None]
    rgb += np.float32(128.0 * (1.0 - contrast))
    return np.clip(rgb, 0, 255).astype(np.uint8), ids


# --------------------------------------------------------------------------------------------
# Writing datasets.


def _frame_name(index: int) -> str:
    return f"{index:06d}.png"


def _write_frame(directory: Path, seed: int, size: tuple[int, int], index: int) -> int:
    """Render one frame and write its CARLA-encoded RGB and mask PNGs (runs in a worker)."""
    rgb, ids = render_frame(seed, index, size)
    camera = np.empty((*size, 4), np.uint8)
    camera[..., :3] = rgb
    camera[..., 3] = 255
    mask = np.zeros((*size, 4), np.uint8)
    mask[..., 0] = ids
    mask[..., 3] = 255
    name = _frame_name(index)
    Image.fromarray(camera).save(directory / "CameraRGB" / name, compress_level=PNG_COMPRESS_LEVEL)
    Image.fromarray(mask).save(directory / "CameraMask" / name, compress_level=PNG_COMPRESS_LEVEL,
                               compress_type=zlib.Z_RLE)  # flat label regions: run-length coding is enough
    return index


def _manifest(n_frames: int, seed: int, size: tuple[int, int]) -> dict:
    return {"generator": "unet_course.synthetic", "version": GENERATOR_VERSION, "layout": SYNTHETIC.layout,
            "seed": seed, "n_frames": n_frames, "size": list(size)}


def is_complete(out_dir: str | os.PathLike, n_frames: int = DEFAULT_FRAMES, seed: int = 0,
                size: tuple[int, int] = SYNTHETIC.image_size) -> bool:
    """True if ``out_dir`` holds a finished dataset made with exactly these settings."""
    out_dir = Path(out_dir)
    expected = {_frame_name(i) for i in range(n_frames)}
    try:
        return json.loads((out_dir / MANIFEST_NAME).read_text()) == _manifest(n_frames, seed, size) and all(
            set(os.listdir(out_dir / folder)) == expected for folder in ("CameraRGB", "CameraMask"))
    except (OSError, ValueError):
        return False


def generate(out_dir: str | os.PathLike, n_frames: int = DEFAULT_FRAMES, seed: int = 0,
             size: tuple[int, int] = SYNTHETIC.image_size, workers: int | None = None, progress: bool = True) -> Path:
    """Write ``n_frames`` synthetic frames to ``out_dir`` in the CARLA layout and return its path.

    Frames are written into a hidden temporary folder next to ``out_dir`` that is renamed only
    once every frame and the ``dataset.json`` manifest are in place, so an interrupted run never
    leaves a folder that looks finished. If ``out_dir`` already holds a dataset with the same
    settings, nothing is done; one made by this generator with other settings is replaced; any
    other non-empty folder is left alone and raises ``FileExistsError``.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    size = (int(size[0]), int(size[1]))
    if is_complete(out_dir, n_frames, seed, size):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).exists():
        raise FileExistsError(f"{out_dir} is not empty and was not made by this generator; choose another folder.")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        for folder in ("CameraRGB", "CameraMask"):
            (staging / folder).mkdir()
        _render_all(staging, n_frames, seed, size, workers, progress)
        (staging / MANIFEST_NAME).write_text(json.dumps(_manifest(n_frames, seed, size), indent=2) + "\n")
        _move_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not is_complete(out_dir, n_frames, seed, size):  # another process won the race with other settings
        raise RuntimeError(f"{out_dir} was replaced by another run while generating; run again.")
    return out_dir


def _render_all(directory, n_frames, seed, size, workers, progress):
    from tqdm.auto import tqdm

    write = partial(_write_frame, directory, seed, size)
    workers = min(workers or os.cpu_count() or 1, max(n_frames, 1))
    with tqdm(total=n_frames, desc="Synthetic frames", unit="frame", disable=not progress) as bar:
        if workers == 1:
            for index in range(n_frames):
                write(index)
                bar.update(1)
            return
        # "spawn": workers must not inherit the state of a parent that may have TensorFlow loaded.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(write, range(n_frames), chunksize=8):
                bar.update(1)


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename the finished staging folder to ``out_dir``, swapping out an outdated dataset."""
    if out_dir.exists() and any(out_dir.iterdir()):
        retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, retired / out_dir.name)
        shutil.rmtree(retired, ignore_errors=True)
    elif out_dir.exists():
        out_dir.rmdir()
    try:
        os.replace(staging, out_dir)
    except OSError:
        if not out_dir.exists():  # a concurrent run finished first: keep its result
            raise


def default_dataset_dir() -> Path:
    """Where the default dataset is cached.

    ``$UNET_COURSE_DATA/synthetic`` if that variable is set; else ``<repo>/data/synthetic`` when
    the package runs from a checkout; else ``~/.cache/unet_course/synthetic``.
    """
    if os.environ.get("UNET_COURSE_DATA"):
        return Path(os.environ["UNET_COURSE_DATA"]).expanduser() / "synthetic"
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file():
        return repo / "data" / "synthetic"
    return Path.home() / ".cache" / "unet_course" / "synthetic"


def ensure_default_dataset(n_frames: int = DEFAULT_FRAMES, seed: int = 0, progress: bool = True) -> Path:
    """Path of the default synthetic dataset, generating it first if it is missing or outdated."""
    return generate(default_dataset_dir(), n_frames=n_frames, seed=seed, progress=progress)


# --------------------------------------------------------------------------------------------
# Colour-only baseline: how far per-pixel colour alone gets on this data.


def colour_lookup_scores(train, test, bits: int = 5, n_classes: int = SYNTHETIC.n_classes,
                         void_id: int | None = SYNTHETIC.void_id) -> dict:
    """Fit the best colour -> class table on ``train`` and score it on ``test``.

    ``train`` and ``test`` are iterables of ``(rgb, ids)`` frames. Colours are quantised to
    ``bits`` per channel; each colour predicts its most frequent class in ``train`` (unseen
    colours the most frequent class overall). This is the ceiling for any model that looks at one
    pixel at a time: the gap up to a CNN is what shape and context are worth.
    """
    shift = 8 - bits
    counts = np.zeros(((1 << 3 * bits) * n_classes), np.int64)
    for rgb, ids in train:
        counts += np.bincount(_colour_keys(rgb, shift) * n_classes + ids.ravel(), minlength=counts.size)
    counts = counts.reshape(-1, n_classes)
    table = counts.argmax(axis=1)
    table[counts.sum(axis=1) == 0] = counts.sum(axis=0).argmax()

    confusion = np.zeros(n_classes * n_classes, np.int64)
    for rgb, ids in test:
        confusion += np.bincount(ids.ravel().astype(np.int64) * n_classes + table[_colour_keys(rgb, shift)],
                                 minlength=confusion.size)
    from unet_course.metrics import scores_from_confusion  # lazy: keeps TensorFlow out of the generator

    return scores_from_confusion(confusion.reshape(n_classes, n_classes), void_id)


def _colour_keys(rgb, shift):
    quantised = (rgb >> shift).astype(np.int64).reshape(-1, 3)
    bits = 8 - shift
    return (quantised[:, 0] << 2 * bits) | (quantised[:, 1] << bits) | quantised[:, 2]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic street-scene dataset in the CARLA layout.")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: $UNET_COURSE_DATA/synthetic, else <repo>/data/synthetic)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, nargs=2, default=SYNTHETIC.image_size, metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU)")
    args = parser.parse_args(argv)
    out = generate(args.out or default_dataset_dir(), n_frames=args.frames, seed=args.seed, size=tuple(args.size),
                   workers=args.workers)
    print(out)


if __name__ == "__main__":
    main()
